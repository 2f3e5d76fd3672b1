"""Saliency training sets (maps follow the image) and training steps (C2AM-H, flip check)."""

import numpy as np
import pytest
import torch

from wsss.data import collate
from wsss.engine import StepContext
from wsss.errors import DataError
from wsss.saliency import SALIENCY_METHODS
from wsss.saliency.datasets import CamHintDataset, SaliencyTargetDataset, build_saliency_transform
from wsss.errors import CheckpointError
from wsss.saliency.task import C2AMTask, PoolNetTask

MODEL = {"backbone": "resnet18", "backbone_kwargs": {"width": 8}}


@pytest.fixture(scope="module")
def tiny(fg_maps_split):
    """A 4-image synthetic split with 'CAMs' and saliency maps equal to the foreground mask."""
    return fg_maps_split


def _is_fg(mask):
    return (mask > 0) & (mask < 255)


def test_hints_follow_crops_and_flips(tiny):
    root, base = tiny
    aug = {"resize_square": 56, "crop": 64, "hflip": True}  # crop larger than the image: padding too
    ds = CamHintDataset(base, root / "cams", build_saliency_transform(aug))
    for k in range(8):
        s = ds[k % len(ds)]
        hint, mask = s["maps"]["hint"].numpy(), s["mask"].numpy()
        assert hint.shape == mask.shape == (64, 64)
        inside = mask != 255
        # bilinear hint vs nearest mask: agree away from the object's contour
        assert (np.abs(hint[inside] - _is_fg(mask)[inside]) < 0.5).mean() > 0.97
        assert not hint[~inside].any()  # padding carries no hint


def test_missing_cam_file_is_named(tiny, tmp_path):
    root, base = tiny
    with pytest.raises(DataError, match="CAM file for") as e:
        CamHintDataset(base, tmp_path)
    assert str(tmp_path) in str(e.value)


def test_saliency_targets_and_valid_pixels(tiny):
    root, base = tiny
    ds = SaliencyTargetDataset(base, root / "sal", build_saliency_transform({"crop": 64, "hflip": True}))
    s = ds[0]
    sal, valid, mask = s["maps"]["saliency"].numpy(), s["maps"]["valid"].numpy(), s["mask"].numpy()
    np.testing.assert_array_equal(valid > 0, mask != 255)
    np.testing.assert_array_equal(sal > 0.5, _is_fg(mask))


def ctx(epoch, step, steps_per_epoch=3):
    return StepContext(step=step, max_step=10, epoch=epoch, epochs=3, steps_per_epoch=steps_per_epoch)


def _batch(root, base, n=2):
    ds = CamHintDataset(base, root / "cams", build_saliency_transform({"resize_square": 96, "crop": 96}))
    return collate([ds[i] for i in range(n)])


def test_c2amh_step_adds_the_hint_loss(tiny):
    root, base = tiny
    torch.manual_seed(0)
    task = C2AMTask({"model": MODEL, "method": {"hint_weight": 1.0}})
    batch = _batch(root, base)
    out = task.training_step(batch, ctx(1, 4))
    total = out["sim_fg"] + out["sim_bg_fg"] + out["sim_bg"] + out["hint"]
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-5) and out["hint"] > 0
    out["loss"].backward()
    assert task.model.head_conv.weight.grad.abs().sum() > 0
    assert not task.flip_check  # hints fix the polarity: no flip check
    plain = C2AMTask({"model": MODEL, "method": {"hint_weight": 0}})
    assert plain.flip_check and "hint" not in plain.training_step(batch, ctx(1, 4))


def test_flip_check_runs_on_the_last_step_of_the_first_epoch(tiny):
    root, base = tiny
    task = C2AMTask({"model": MODEL, "method": {"hint_weight": 0, "flip_border": 1}})
    with torch.no_grad():
        task.model.head_bn.bias.fill_(10.0)  # sigmoid ~1 everywhere: the map covers the border
    batch = _batch(root, base)
    task.training_step(batch, ctx(0, 1))
    assert not bool(task.model.flipped)  # not the last step of epoch 0
    task.training_step(batch, ctx(1, 5))
    assert not bool(task.model.flipped)  # not the first epoch
    out = task.training_step(batch, ctx(0, 2))
    assert bool(task.model.flipped) and out["flipped"] == 1.0
    state = task.state_dict()
    assert bool(state["model.flipped"])


def test_methods_registry():
    assert SALIENCY_METHODS.names() == ["all-bg", "all-fg", "cam-max", "ccam", "poolnet", "threshold"]
    assert SALIENCY_METHODS.get("cam-max")().task is None
    sample = {"image": np.zeros((3, 5, 3), np.uint8)}
    assert (SALIENCY_METHODS.get("all-fg")().predictor({})([sample])[0] == 255).all()
    assert (SALIENCY_METHODS.get("all-bg")().predictor({})([sample])[0] == 0).all()


def test_backbone_init_from_another_experiment(tmp_path):
    torch.manual_seed(0)
    source = C2AMTask({"model": MODEL, "method": {}})
    torch.save({"state_dict": source.state_dict()}, tmp_path / "a.pth")
    cfg = {"model": {**MODEL, "width": 8, "backbone_init": str(tmp_path / "a.pth")}}
    target = PoolNetTask(cfg)
    for k, v in source.model.backbone.state_dict().items():
        assert torch.equal(target.model.backbone.state_dict()[k], v), k
    # a checkpoint with two networks needs the prefix
    two = {**{f"net.{k}": v for k, v in source.model.state_dict().items()},
           **{f"oc.{k}": v for k, v in source.model.state_dict().items()}}
    torch.save({"state_dict": two}, tmp_path / "b.pth")
    cfg["model"]["backbone_init"] = str(tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match="backbone_init_prefix"):
        PoolNetTask(cfg)
    cfg["model"]["backbone_init_prefix"] = "oc.backbone."
    assert torch.equal(PoolNetTask(cfg).model.backbone.conv1.weight, source.model.backbone.conv1.weight)
