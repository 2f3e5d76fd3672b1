"""Declared method options: merged along the class hierarchy, typos rejected, listed by the train
tools; every shipped config builds its task."""

from pathlib import Path

import pytest
import torch

from wsss.affinity import AFFINITY_TASKS
from wsss.backbones import backbone_from_config
from wsss.cams import METHODS, build_method
from wsss.config import load_config
from wsss.engine import Option, TaskModule, declared_options, format_options, resolve_options
from wsss.errors import ConfigError
from wsss.saliency import SALIENCY_TASKS
from wsss.segmentation import SEG_TASKS
from wsss.segmentation.deeplab import freeze_prefixes

ROOT = Path(__file__).resolve().parents[1]
# frozen_prefixes name parameters of the config's own backbone: checked on it (meta device) below
TINY_MODEL = {"backbone": "resnet18", "backbone_kwargs": {"width": 8}, "weights": None, "backbone_init": None,
              "frozen_prefixes": []}



class A(TaskModule):
    options = {"x": 1, "y": Option(2, "the y")}


class B(A):
    options = {"y": 3, "z": Option(None, "the z")}


def test_options_merge_along_the_hierarchy_and_reject_unknown_keys():
    assert {k: o.default for k, o in declared_options(B).items()} == {"x": 1, "y": 3, "z": None}
    assert resolve_options(B, {"name": "b", "x": 5}) == {"name": "b", "x": 5, "y": 3, "z": None}
    assert B({"method": {"z": 7}}).opts == {"x": 1, "y": 3, "z": 7}
    with pytest.raises(ConfigError, match=r"method\.w") as e:
        resolve_options(B, {"w": 0})
    assert "known keys: x, y, z" in str(e.value)
    assert format_options(B)[1].startswith("method.y = 3")


def test_pnoc_inherits_puzzle_and_poc_options_and_names_a_typo():
    pnoc, poc, puzzle = (set(METHODS.get(n).declared_options()) for n in ("pnoc", "poc", "puzzle"))
    assert puzzle < poc < pnoc and {"label_smoothing", "alpha", "lambda_cse", "delta_noc"} <= pnoc
    cfg = {"model": TINY_MODEL, "method": {"lamda_cse": 0.5}}
    with pytest.raises(ConfigError, match="method.lamda_cse") as e:
        build_method("pnoc", cfg, 3)
    assert "lambda_cse" in str(e.value) and "delta_noc" in str(e.value)  # the known keys are listed


@pytest.mark.parametrize("name,registry", [("train_cam", "pnoc"), ("train_saliency", "ccam"),
                                           ("train_affinity", "irn"), ("train_seg", "deeplab")])
def test_list_options_prints_defaults_without_a_config(name, registry, capsys, tool):
    assert tool(name)(["--method", registry, "--list-options"]) == 0
    out = capsys.readouterr().out
    cls = {"pnoc": METHODS, "ccam": SALIENCY_TASKS, "irn": AFFINITY_TASKS, "deeplab": SEG_TASKS}[registry].get(registry)
    for key, opt in cls.declared_options().items():
        assert f"method.{key}" in out and repr(opt.default) in out


def test_list_options_shows_the_configs_values(capsys, tool):
    tool("train_cam")(["--config", str(ROOT / "configs/synthetic/pnoc.yaml"), "--list-options", "method.delta_noc=0.3"])
    out = capsys.readouterr().out
    assert "PuzzleNOC (pnoc)" in out and "= 0.3" in out and "method.puzzle" in out


def test_a_typo_stops_training_before_anything_is_built(tmp_path, tool):
    with pytest.raises(ConfigError, match="method.lamda_cse"):
        tool("train_cam")(["--config", str(ROOT / "configs/synthetic/pnoc.yaml"), "--data", str(tmp_path),
                           "--exp", str(tmp_path / "exp"), "method.lamda_cse=0.5"])
    assert not (tmp_path / "exp").exists()


def stage_of(path, cfg):
    """(registry, task name) of a shipped config, or None for a file that is only a base."""
    stem = path.stem
    if stem.startswith("deeplab"):
        return SEG_TASKS, (cfg.get("method") or {}).get("name", "deeplab")
    if stem.startswith("affinity"):
        return AFFINITY_TASKS, cfg["method"]["name"]
    if stem in ("ccam", "poolnet"):
        return SALIENCY_TASKS, cfg["method"]["name"]
    name = (cfg.get("method") or {}).get("name")
    return (METHODS, name) if name else None


SHIPPED = sorted((ROOT / "configs").glob("*/*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[f"{p.parent.name}/{p.stem}" for p in SHIPPED])
def test_every_shipped_config_builds_its_task(path):
    cfg = load_config(path)
    found = stage_of(path, cfg)
    if found is None:
        assert path.stem == "base", f"{path} names no task"
        return
    registry, name = found
    task_cls = registry.get(name)
    opts = task_cls.effective_options(cfg)  # every method key declared
    assert set(cfg.get("method") or {}) <= set(opts)
    # the task itself, on a tiny backbone (the published ones need ImageNet files)
    small = {**cfg, "model": {**(cfg.get("model") or {}), **TINY_MODEL}}
    task = task_cls(small, 3)
    assert task.opts == opts
    frozen = (cfg.get("model") or {}).get("frozen_prefixes")
    if frozen:
        with torch.device("meta"):
            backbone = backbone_from_config(cfg["model"], pretrained=False)
        freeze_prefixes(backbone, frozen)  # a prefix that names no parameter is a ConfigError
