"""Extra pixel losses in segmentation training: the registry, the entropy entry, the task hook."""

import math

import pytest
import torch
import torch.nn.functional as F

from test_segmentation_deeplab import TinyBackbone
from wsss.errors import ConfigError
from wsss.segmentation.pixel_losses import PIXEL_LOSSES, build_extra_loss, entropy_loss
from wsss.segmentation.task import SegmentationTask


def make_task(**method):
    cfg = {"model": {"name": "deeplabv1", "output_stride": 8, "head": {"width": 16}}, "method": method}
    torch.manual_seed(0)
    return SegmentationTask(cfg, num_classes=3, backbone=TinyBackbone(8)).eval()


def test_entropy_known_answers():
    assert entropy_loss(torch.zeros(2, 5, 3, 4), None).item() == pytest.approx(math.log(5), rel=1e-6)
    peaked = torch.full((1, 4, 2, 2), -30.0)
    peaked[:, 1] = 30.0
    assert entropy_loss(peaked, None).item() == pytest.approx(0.0, abs=1e-6)
    two = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1)  # p = (1/4, 3/4)
    want = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert entropy_loss(two, None).item() == pytest.approx(want, rel=1e-6)


def test_entropy_gradient_step_sharpens():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 5, requires_grad=True)
    before = entropy_loss(logits, None)
    before.backward()
    with torch.no_grad():
        after = entropy_loss(logits - 0.5 * logits.grad, None)
    assert after < before


def test_build_extra_loss_checks_names_and_options():
    assert build_extra_loss(None) is None
    name, weight, fn = build_extra_loss({"name": "entropy", "weight": 0.3, "eps": 1e-6})
    assert (name, weight) == ("entropy", 0.3)
    assert fn(torch.zeros(1, 3, 2, 2), {}).item() == pytest.approx(math.log(3), rel=1e-5)
    with pytest.raises(ConfigError, match="entropy"):
        build_extra_loss({"name": "entropi"})
    with pytest.raises(ConfigError, match="no option"):
        build_extra_loss({"name": "entropy", "sigma": 5})
    with pytest.raises(ConfigError, match="mapping with a name"):
        build_extra_loss("entropy")


def test_task_adds_the_weighted_loss_on_the_raw_logits():
    task = make_task(extra_loss={"name": "entropy", "weight": 0.5})
    x, y = torch.randn(2, 3, 32, 40), torch.randint(0, 4, (2, 32, 40))
    out = task.training_step({"image": x, "mask": y}, None)
    raw = task.model.forward_logits(x)
    assert raw.shape == (2, 4, 4, 5)  # stride 8: the loss sees the head's grid, not the upsampled map
    ce = F.cross_entropy(task.model(x), y)
    torch.testing.assert_close(out["ce"], ce)
    torch.testing.assert_close(out["entropy"], entropy_loss(raw, None))
    torch.testing.assert_close(out["loss"], ce + 0.5 * entropy_loss(raw, None))
    plain = make_task().training_step({"image": x, "mask": y}, None)
    torch.testing.assert_close(plain["loss"], ce)
    assert "entropy" not in plain


def test_a_registered_loss_gets_the_raw_logits_and_the_batch():
    seen = {}

    def probe(logits, batch, scale=1.0):
        seen.update(shape=tuple(logits.shape), keys=sorted(batch), scale=scale)
        return logits.mean() * 0

    PIXEL_LOSSES.register("probe_for_test")(probe)
    try:
        task = make_task(extra_loss={"name": "probe_for_test", "scale": 2.0})
        task.training_step({"image": torch.randn(1, 3, 24, 24), "mask": torch.zeros(1, 24, 24, dtype=torch.long)},
                           None)
    finally:
        del PIXEL_LOSSES._items["probe_for_test"]
    assert seen == {"shape": (1, 4, 3, 3), "keys": ["image", "mask"], "scale": 2.0}
