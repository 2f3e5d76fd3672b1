import pytest
import torch
import torch.nn.functional as F

from wsss.cams.losses import masked_l1, mlsm, smooth_labels
from wsss.cams.puzzle import ramp, stitch, tile


def test_tile_matches_manual_quadrants_and_stitch_inverts_exactly():
    x = torch.randn(3, 2, 8, 12)
    t = tile(x)
    assert t.shape == (12, 2, 4, 6)
    quads = [x[:, :, :4, :6], x[:, :, :4, 6:], x[:, :, 4:, :6], x[:, :, 4:, 6:]]
    for k, q in enumerate(quads):
        assert torch.equal(t[3 * k:3 * (k + 1)], q)
    assert torch.equal(stitch(t), x)
    assert torch.equal(stitch(tile(x, 4), 4), x)
    with pytest.raises(ValueError):
        tile(torch.zeros(1, 1, 7, 8))


def test_stitched_tile_outputs_equal_full_output_for_a_local_network():
    # A stride-4 network whose receptive field stays inside a tile (4x4 pooling + 1x1 conv):
    # the stitched CAMs of the tiles are exactly the full image's CAMs.
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 1, bias=False)
    net = lambda x: conv(F.avg_pool2d(x, 4))  # noqa: E731
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(stitch(net(tile(x))), net(x), atol=1e-6)


def test_losses_hand_computed():
    y = torch.tensor([[1.0, 0.0]])
    assert torch.equal(smooth_labels(y, 0.1), torch.tensor([[0.95, 0.05]]))
    assert smooth_labels(y, 0) is y
    logits = torch.tensor([[2.0, -1.0]])
    expected = -(torch.log(torch.sigmoid(torch.tensor(2.0))) + torch.log(torch.sigmoid(torch.tensor(1.0)))) / 2
    assert mlsm(logits, y).item() == pytest.approx(expected.item(), rel=1e-6)
    a = torch.zeros(1, 2, 2, 2)
    b = torch.ones(1, 2, 2, 2)
    # class 0 present: 4 pixels with |a-b| = 1; class 1 absent; mean over all 8 elements.
    assert masked_l1(a, b, y).item() == pytest.approx(0.5)


def test_alpha_ramp_reference_schedule():
    assert ramp(0, 100, 4.0, 0.5) == 0.0
    assert ramp(25, 100, 4.0, 0.5) == pytest.approx(2.0)
    assert ramp(50, 100, 4.0, 0.5) == 4.0 and ramp(99, 100, 4.0, 0.5) == 4.0
    assert ramp(0, 100, 4.0, 0.0) == 4.0
