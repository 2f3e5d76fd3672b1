"""SP-CAM's released files through the hub: the Q model / SpixelFCN checkpoint and the SP-CAM
classifier (with the Q model as its companion) load strictly and compute what the same weights
compute when put straight into the toolkit tasks (the pattern of tests/test_hub_convert.py)."""

import dataclasses

import pytest
import torch

from hub_fakes import run_tool  # noqa: F401  (fixture)
from test_hub_convert import Holder, pnoc_stages, toolkit_task
from wsss import hub
from wsss.errors import CheckpointError
from wsss.hub.convert import _spcam_arch, build_task, convert, experiment_config, load_experiment

SMALL = {"model.backbone": "resnet18", "model.backbone_kwargs": {"width": 8, "dilate_last": False},
         "method.drm_widths": [16, 8, 8]}


@pytest.mark.parametrize("name,wrapper", [("spcam/q-final", None), ("spcam/q-img", "module"),
                                          ("spcam/spixelnet-bsd", "tar")])
def test_q_model_converts_to_the_same_association_network(tmp_path, name, wrapper):
    art = hub.get(name)
    direct, kind = toolkit_task(art, seed=4)
    state = direct.net.state_dict()  # SpixelNet1l_bn's names are the toolkit's
    if wrapper == "module":
        state = {f"module.{k}": v for k, v in state.items()}
    if wrapper == "tar":  # SpixelFCN's checkpoint dict
        state = {"epoch": 3, "arch": "SpixelNet1l_bn", "state_dict": state, "best_EPE": 0.5}
    torch.save(state, tmp_path / art.filename)
    report = convert(art, tmp_path / art.filename, tmp_path / "exp")
    assert report["layout"] == "no backbone"
    loaded = load_experiment(tmp_path / "exp", kind, None)
    x = torch.randn(2, 3, 48, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = direct.net(x), loaded.net(x)
    assert torch.equal(a, b) and torch.allclose(a.sum(1), torch.ones(2, 48, 64))


def released_spcam(task):
    """SP_CAM_Model's state layout (release commit): ``model`` + stage aliases, ``get_qfeats``,
    ``get_tran_conv``, ``classifier``."""
    net = task.net
    stages = {f"stage{i}": s for i, s in enumerate(pnoc_stages(net.backbone), start=1)}
    return Holder(model=net.backbone, **stages, get_qfeats=net.drm.q_feats, get_tran_conv=net.drm.tran_conv,
                  classifier=net.head)


def test_spcam_classifier_converts_with_its_q_model(tmp_path, monkeypatch):
    monkeypatch.setenv("WSSS_CACHE", str(tmp_path / "cache"))
    art = dataclasses.replace(hub.get("spcam/voc/model"), overrides=SMALL)
    direct, kind = toolkit_task(art, seed=6)
    q_art = hub.get("spcam/q-final")
    q_path = q_art.cache_path()
    q_path.parent.mkdir(parents=True)
    src = tmp_path / "spcam.pth"
    torch.save(released_spcam(direct).state_dict(), src)
    with pytest.raises(CheckpointError, match="needs spcam/q-final"):
        convert(art, src, tmp_path / "exp")
    torch.save(direct.spixel.state_dict(), q_path)
    report = convert(art, src, tmp_path / "exp")
    assert report["layout"] == "model" and any(k.startswith("stage5.") for k in report["dropped"])
    loaded = load_experiment(tmp_path / "exp", kind, art.classes)
    assert loaded.net.backbone.layer4[0].conv2.dilation == (1, 1)  # read from the keys: undilated layer4
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = direct.cam_forward(x), loaded.cam_forward(x)
    assert a.shape == (2, 21, 4, 4) and a.abs().sum() > 0
    assert torch.equal(a, b)


def test_spcam_trunk_is_read_from_the_keys():
    resnet = {"model.conv1.weight": None, "classifier.weight": None}
    resnest = {"model.conv1.0.weight": None, "classifier.weight": None}
    as_resnest = {"model": {"backbone": "resnest50"}}
    assert _spcam_arch(resnet, as_resnest) == {"model.backbone_kwargs.dilate_last": False, "model.backbone": "resnet50"}
    assert _spcam_arch(resnet, {"model": {"backbone": "resnet50"}}) == {"model.backbone_kwargs.dilate_last": False}
    assert _spcam_arch(resnest, as_resnest) == {}
    assert _spcam_arch(resnest, {"model": {"backbone": "resnet50"}})["model.backbone"] == "resnest50"


def test_spcam_released_architecture_matches_the_reference_names():
    """Every released key name (release-commit SP_CAM_Model, ResNet-50 trunk) has a place in the
    toolkit model: the q-feature stack, the transform convs and the 21-way classifier."""
    art = dataclasses.replace(hub.get("spcam/voc/model"),
                              overrides={"model.backbone": "resnet50", "model.backbone_kwargs": {"dilate_last": False}})
    task = build_task("cam", experiment_config(art), 20, meta=True)
    keys = set(released_spcam(task).state_dict())
    assert {"get_qfeats.0.0.weight", "get_qfeats.0.1.running_var", "get_qfeats.4.1.weight",
            "get_tran_conv.0.0.weight", "get_tran_conv.3.0.bias", "classifier.weight"} <= keys
    shapes = released_spcam(task).state_dict()
    assert tuple(shapes["get_tran_conv.0.0.weight"].shape) == (1024, 2048 + 128, 3, 3)
    assert tuple(shapes["get_tran_conv.3.0.weight"].shape) == (18, 128, 1, 1)
    assert tuple(shapes["classifier.weight"].shape) == (21, 2048, 1, 1)
    assert tuple(shapes["get_qfeats.0.0.weight"].shape) == (32, 9, 3, 3)


def test_reproduce_plans_the_q_model_with_the_classifier(tmp_path, run_tool, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WSSS_CACHE", str(tmp_path / "cache"))
    code, out = run_tool("reproduce", ["spcam-voc", "--dry-run"])
    assert code == 0, out
    assert "download spcam/voc/model" in out and "download spcam/q-final" in out
    assert "convert  spcam/voc/model (spcam-classifier)" in out and "tools/infer_cam.py" in out
