"""End to end on a tiny synthetic split: C2AM-H -> masks -> PoolNet -> maps -> evaluate --mode saliency."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from wsss.data import build_dataset
from wsss.data.io import save_cam
from wsss.data.synthetic import generate
from wsss.saliency.datasets import load_saliency

ROOT = Path(__file__).resolve().parents[1]


def tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


COMMON = ["model.backbone_kwargs.width=8", "train.num_workers=0", "train.batch_size=8", "train.log_every=1"]


def test_saliency_stage_end_to_end(tmp_path, capsys):
    """The runner-2 flow on a tiny set: C2AM-H activations -> threshold sweep on the training
    split -> masks at the best threshold (0/255, resumable) -> PoolNet on them; C2AM-H's masks
    must beat the trivial all-foreground / all-background maps."""
    data = tmp_path / "data"
    generate(data, seed=3, n_train=16, n_val=4, size=64, progress=False)
    ds = build_dataset("synthetic", data, "train")
    for i in ds.ids:  # hint CAMs: the foreground, subsampled (as if from a CAM network)
        m = ds.load_gt_mask(i)
        fg = ((m > 0) & (m < 255)).astype(np.float32)
        save_cam(tmp_path / "cams" / f"{i}.npz", [0], fg[None, ::4, ::4], fg[None] * 0.9)
    train, infer, evaluate = tool("train_saliency"), tool("infer_saliency"), tool("evaluate")
    ccamh, pn = tmp_path / "ccamh", tmp_path / "poolnet"
    config = str(ROOT / "configs/synthetic/ccam.yaml")

    def score(name, pred):
        out = tmp_path / f"eval_{name}.json"
        assert evaluate(["--data", str(data), "--split", "train", "--pred", str(pred), "--mode", "saliency",
                         "--out", str(out), "--workers", "1"]) == 0
        return json.loads(out.read_text())

    assert train(["--method", "ccam", "--config", config, "--data", str(data), "--exp", str(ccamh),
                  f"method.cam_dir={tmp_path / 'cams'}", "train.epochs=12", "train.lr=0.01", "train.momentum=0.9",
                  "augment.resize_square=72", "augment.crop=64", *COMMON]) == 0
    assert (ccamh / "checkpoints/last.pth").is_file() and (ccamh / "config.yaml").is_file()
    assert infer(["--exp", str(ccamh), "--split", "train", "--out", str(ccamh / "act"), "infer.binarize=false",
                  "infer.scales=[1.0,1.5]"]) == 0
    threshold = score("act", ccamh / "act")["threshold"]
    masks = ["--method", "threshold", "--config", config, "--data", str(data), "--split", "train",
             "--out", str(ccamh / "sal"), f"method.act_dir={ccamh / 'act'}", f"infer.threshold={threshold}"]
    assert infer(masks) == 0
    assert all(set(np.unique(load_saliency(ccamh / "sal" / f"{i}.png"))) <= {0, 255} for i in ds.ids)
    assert (ccamh / "sal/config.yaml").is_file()
    capsys.readouterr()
    assert infer(masks) == 0
    assert "0 written, 16 existing kept" in capsys.readouterr().out  # resumable

    assert train(["--method", "poolnet", "--config", str(ROOT / "configs/synthetic/poolnet.yaml"), "--data",
                  str(data), "--exp", str(pn), f"method.sal_dir={ccamh / 'sal'}", "model.width=8",
                  f"model.backbone_init={ccamh / 'checkpoints/last.pth'}", "train.epochs=2", *COMMON]) == 0
    assert infer(["--exp", str(pn), "--split", "train", "--out", str(pn / "sal")]) == 0
    maps = [load_saliency(pn / "sal" / f"{i}.png") for i in ds.ids]
    assert all(m.shape == (64, 64) for m in maps) and len({int(v) for m in maps for v in np.unique(m)}) > 2

    scores = {"ccamh": score("ccamh", ccamh / "sal")["miou"]}
    for name in ("all-fg", "all-bg"):
        assert infer(["--method", name, "--data", str(data), "--split", "train", "--out", str(tmp_path / name)]) == 0
        scores[name] = score(name, tmp_path / name)["miou"]
    # The hints mark the objects: the masks must separate them from the background better than
    # calling everything foreground or everything background.
    assert scores["ccamh"] > max(scores["all-fg"], scores["all-bg"]) + 5, scores
