"""Cross-entropy with ignore index 255 and label smoothing, against hand-computed values."""

import math

import torch

from wsss.segmentation import segmentation_loss


def _pixels(values):
    """Logits for a 1 x len(values) image: values is a list of per-pixel K-vectors."""
    return torch.tensor(values, dtype=torch.float32).t().reshape(1, len(values[0]), 1, len(values))


def test_known_value_without_smoothing():
    logits = _pixels([[2.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[[0, 1]]])
    # pixel 1: -log(e^2 / (e^2 + 1)); pixel 2: -log(e / (1 + e))
    want = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert math.isclose(segmentation_loss(logits, target).item(), want, rel_tol=1e-6)


def test_ignore_index_drops_pixels_from_value_and_gradient():
    logits = _pixels([[2.0, 0.0], [0.0, 1.0], [7.0, -3.0]]).requires_grad_(True)
    target = torch.tensor([[[0, 1, 255]]])
    loss = segmentation_loss(logits, target)
    want = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2  # mean over 2 valid pixels
    assert math.isclose(loss.item(), want, rel_tol=1e-6)
    loss.backward()
    assert torch.all(logits.grad[..., 2] == 0) and torch.any(logits.grad[..., :2] != 0)


def test_label_smoothing_known_value():
    ls, k = 0.2, 3
    logits = _pixels([[1.0, 2.0, 3.0], [0.5, 0.5, -1.0]])
    target = torch.tensor([[[2, 255]]])
    logp = [1.0 - 3.0 - math.log(1 + math.exp(-1) + math.exp(-2)) + v for v in (0.0, 1.0, 2.0)]
    # target distribution (1 - ls) * onehot + ls / K on the one valid pixel
    want = -((1 - ls) * logp[2] + ls / k * sum(logp))
    got = segmentation_loss(logits, target, label_smoothing=ls).item()
    assert math.isclose(got, want, rel_tol=1e-6)
    assert got > segmentation_loss(logits, target).item()  # smoothing penalises a confident hit


def test_uniform_logits_give_log_k_for_any_smoothing():
    logits = torch.zeros(2, 4, 3, 3)
    target = torch.randint(0, 4, (2, 3, 3))
    for ls in (0.0, 0.1, 0.5):
        assert math.isclose(segmentation_loss(logits, target, label_smoothing=ls).item(), math.log(4), rel_tol=1e-6)


def test_all_ignored_batch_is_zero_not_nan():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((1, 2, 2), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)
