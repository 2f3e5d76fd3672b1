import pytest
import torch

from wsss.cams import METHODS, build_method
from wsss.cams.losses import gap2d, mlsm
from wsss.cams.puzzle import stitch, tile
from wsss.engine import StepContext
from wsss.errors import ConfigError


def tiny_cfg(**method):
    return {"model": {"backbone": "resnet18", "output_stride": 16, "backbone_kwargs": {"width": 8}},
            "method": {"label_smoothing": 0.1, **method}}


def batch(n=2, size=64, classes=3):
    torch.manual_seed(0)
    return {"image": torch.randn(n, 3, size, size), "label": torch.tensor([[1.0, 0, 1], [0, 1, 0]])[:n, :classes]}


def test_registry_and_errors():
    assert {"cam", "puzzle"} <= set(METHODS.names())
    with pytest.raises(ConfigError, match="unknown CAM method"):
        build_method("nope", tiny_cfg(), 3)
    with pytest.raises(ConfigError):
        build_method("puzzle", tiny_cfg(num_pieces=3), 3)
    with pytest.raises(ConfigError, match="model.backbone"):
        build_method("cam", {"model": {}}, 3)


def test_vanilla_loss_groups_and_cams():
    task = build_method("cam", tiny_cfg(), 3)
    b = batch()
    out = task.training_step(b, StepContext())
    logits = gap2d(task.cam_forward(b["image"]))
    y = b["label"] * 0.9 + 0.05
    assert torch.allclose(out["loss"], mlsm(logits, y))
    assert task.cam_forward(b["image"]).shape == (2, 3, 4, 4)
    groups = {g["name"]: g for g in task.param_groups()["main"]}
    assert [p is task.net.head.weight for p in groups["new.weight"]["params"]] == [True]
    assert groups["new.weight"]["lr_mult"] == 10 and "new.bias" not in groups  # 1x1 conv has no bias
    n_bb = sum(len(groups[k]["params"]) for k in ("backbone.weight", "backbone.bias"))
    assert n_bb == len(list(task.net.backbone.parameters()))
    out["loss"].backward()
    assert task.net.head.weight.grad is not None


def test_puzzle_loss_is_the_sum_of_its_terms():
    task = build_method("puzzle", tiny_cfg(), 3).eval()  # eval: BN statistics fixed, outputs reproducible
    b = batch()
    ctx = StepContext(step=25, max_step=100)
    out = task.training_step(b, ctx)
    assert out["alpha"] == pytest.approx(2.0)  # 4 * 25 / (100 * 0.5)
    y = b["label"] * 0.9 + 0.05
    logits, cams = task.net(b["image"])
    merged = stitch(task.net(tile(b["image"]))[1])
    re = ((cams - merged).abs() * b["label"][:, :, None, None]).mean()
    expected = mlsm(logits, y) + mlsm(gap2d(merged), y) + 2.0 * re
    assert torch.allclose(out["loss"], expected, atol=1e-6)
    assert out["re"] > 0  # tiles see less context than the full image: CAMs differ
