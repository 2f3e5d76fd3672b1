"""SEAM's pixel correlation module (wsss/cams/pcm.py) on hand-computed cases."""

import pytest
import torch

from wsss.cams.pcm import PCM, PCMFeatures

EPS = 1e-5


def identity_pcm(channels):
    pcm = PCM(channels, channels)
    with torch.no_grad():
        pcm.f9.weight.copy_(torch.eye(channels)[:, :, None, None])
    return pcm


def test_pcm_on_a_hand_case():
    """Four pixels in a row with features (1, 0), (2, 0), (0, 3), (-1, 0): after L2 normalisation
    pixels 0 and 1 coincide, pixel 2 is orthogonal to them and pixel 3 opposite (relu -> 0)."""
    feats = torch.tensor([[1.0, 2.0, 0.0, -1.0], [0.0, 0.0, 3.0, 0.0]]).view(1, 2, 1, 4)
    pcm = identity_pcm(2)
    # embeddings e_i / (|e_i| + eps): unit vectors shrunk by 1 / (1 + eps / |e_i|)
    norms = [1.0, 2.0, 3.0, 1.0]
    s = [n / (n + EPS) for n in norms]
    unit = [(1, 0), (1, 0), (0, 1), (-1, 0)]
    raw = torch.tensor([[max(0.0, s[i] * s[j] * (unit[i][0] * unit[j][0] + unit[i][1] * unit[j][1]))
                         for j in range(4)] for i in range(4)], dtype=torch.float64)
    expected_a = raw / (raw.sum(0, keepdim=True) + EPS)
    with torch.no_grad():
        a = pcm.affinity(feats)[0].double()
    torch.testing.assert_close(a, expected_a, rtol=1e-6, atol=1e-7)
    # columns 0, 1: the mean of pixels 0 and 1; column 2: pixel 2; column 3: pixel 3 alone
    assert a[0, 0] == pytest.approx(0.5, abs=1e-5) and a[2, 0] == 0 and a[3, 0] == 0
    cam = torch.tensor([[2.0, 4.0, 6.0, 8.0], [1.0, 0.0, 0.0, 1.0]]).view(1, 2, 1, 4)
    with torch.no_grad():
        out = pcm(cam, feats)[0, :, 0].double()
    torch.testing.assert_close(out, cam[0, :, 0].double() @ expected_a, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out, torch.tensor([[3.0, 3.0, 6.0, 8.0], [0.5, 0.5, 0.0, 1.0]], dtype=torch.float64),
                               rtol=0, atol=1e-4)


def test_pcm_resizes_the_map_to_the_feature_grid_and_keeps_constants():
    """Columns sum to ~1, so a constant map stays constant; a 1 x 1 map is resized first."""
    torch.manual_seed(0)
    pcm = PCM(5, 7)
    feats = torch.randn(2, 5, 3, 4)
    cam = torch.tensor([2.0, -1.0]).view(1, 2, 1, 1).expand(2, 2, 1, 1)
    out = pcm(cam, feats)
    assert out.shape == (2, 2, 3, 4)
    # column j is scaled by S_j / (S_j + eps), S_j >= 1 (the relu'd self-affinity ~1)
    torch.testing.assert_close(out, cam.expand(2, 2, 3, 4), rtol=1e-4, atol=1e-4)


def test_pcm_is_float32_under_autocast_and_differentiable():
    torch.manual_seed(1)
    pcm = PCM(4, 6)
    feats = torch.randn(1, 4, 2, 3, requires_grad=True)
    cam = torch.randn(1, 3, 2, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pcm(cam, feats)
    assert out.dtype == torch.float32
    out.square().sum().backward()
    assert cam.grad.abs().sum() > 0 and feats.grad.abs().sum() > 0 and pcm.f9.weight.grad.abs().sum() > 0


def test_pcm_features_layout_and_detached_taps():
    torch.manual_seed(2)
    side = PCMFeatures(in_channels=(4, 6), widths=(2, 3))
    assert side.out_channels == 3 + 2 + 3
    image = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    t1 = torch.randn(2, 4, 3, 3, requires_grad=True)
    t2 = torch.randn(2, 6, 2, 2, requires_grad=True)  # another grid: resized to 3 x 3
    f = side(image, [t1, t2], (3, 3))
    assert f.shape == (2, 8, 3, 3)
    # the image at the grid, align_corners=True: corners and centre are exact pixels
    assert torch.equal(f[:, :3, ::2, ::2], image[:, :, ::4, ::4]) and torch.equal(f[:, :3, 1, 1], image[:, :, 2, 2])
    torch.testing.assert_close(f[:, 3:5], torch.relu(side.f8_3(t1)))
    f.sum().backward()
    assert t1.grad is None and t2.grad is None  # the taps are detached
    assert side.f8_3.weight.grad is not None and side.f8_4.weight.grad is not None
