"""ICAM's feature-similarity loss (wsss/cams/feature_similarity.py): a hand case, the chunked
exact loss against the dense reference formula (values and gradients), and the windowed
approximation's error against its stated bound."""

import math

import pytest
import torch

from wsss.cams.feature_similarity import (feature_similarity, feature_similarity_dense, image_colours,
                                          kernel_tail_mass, window_error_bound, window_offsets)


def t_of(d, mu):
    return math.tanh(mu + math.log((d + 1e-5) / (1 - d + 1e-5)))


def test_two_pixel_hand_case():
    """Grid 1 x 2: pixels at distance 1, colours 0.9 apart in one channel (d = 0.3), predictions
    (0.8, 0.2) and (0.1, 0.9): FS = -(1 / 2) * 2 * k(1) * |p0 - p1|^2 * t(0.3)."""
    sigma, mu = 2.0, 2.5
    colours = torch.tensor([[0.05, 0.95], [0.5, 0.5], [0.2, 0.2]]).view(1, 3, 1, 2)
    probs = torch.tensor([[0.8, 0.1], [0.2, 0.9]]).view(1, 2, 1, 2)
    k1 = math.exp(-1 / (2 * sigma ** 2)) / (2 * math.pi * sigma ** 2)
    dy = 0.7 ** 2 + 0.7 ** 2
    expected = -(1 / 2) * 2 * k1 * dy * t_of(0.3, mu)
    for fn in (lambda: feature_similarity_dense(colours, probs, mu, sigma),
               lambda: feature_similarity(colours, probs, mu, sigma),
               lambda: feature_similarity(colours, probs, mu, sigma, window=1)):
        assert float(fn()) == pytest.approx(expected, rel=1e-5)
    # similar colours (d = 0): t ~ -1, the loss is positive (it penalises differing predictions)
    same = torch.full((1, 3, 1, 2), 0.4)
    pulled = float(feature_similarity(same, probs, mu, sigma))
    assert pulled > 0 and pulled == pytest.approx(k1 * dy * -t_of(0.0, mu), rel=1e-5)


@pytest.mark.parametrize("shape,chunk", [((2, 4, 7, 9), 5), ((1, 21, 6, 6), 1), ((3, 3, 5, 4), 1000),
                                         ((2, 2, 8, 3), 24)])
def test_chunked_loss_equals_the_dense_formula(shape, chunk):
    torch.manual_seed(sum(shape))
    n, k, h, w = shape
    colours = torch.rand(n, 3, h, w) * 1.2 - 0.1  # outside [0, 1] too: clamped by both
    logits = torch.randn(n, k, h, w, requires_grad=True)
    dense = feature_similarity_dense(colours, logits.softmax(1), 2.5, 1.5)
    (g_dense,) = torch.autograd.grad(dense, logits)
    chunked = feature_similarity(colours, logits.softmax(1), 2.5, 1.5, chunk=chunk)
    (g_chunked,) = torch.autograd.grad(chunked, logits)
    torch.testing.assert_close(chunked, dense, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g_chunked, g_dense, rtol=1e-4, atol=1e-8)


def test_window_covering_every_pair_is_exact():
    torch.manual_seed(3)
    colours, logits = torch.rand(2, 3, 5, 6), torch.randn(2, 3, 5, 6, requires_grad=True)
    exact = feature_similarity(colours, logits.softmax(1), 2.5, 2.0)
    (g_exact,) = torch.autograd.grad(exact, logits)
    full = feature_similarity(colours, logits.softmax(1), 2.5, 2.0, window=math.hypot(4, 5))
    (g_full,) = torch.autograd.grad(full, logits)
    torch.testing.assert_close(full, exact, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(g_full, g_exact, rtol=1e-4, atol=1e-9)
    assert len(window_offsets(1.5)) == 4  # (0, 1), (1, -1), (1, 0), (1, 1): half of the 8 neighbours


@pytest.mark.parametrize("radius", [2.0, 3.0, 4.5, 6.0])
def test_window_error_is_within_the_stated_bound(radius):
    """|FS_exact - FS_window(R)| <= 2 x the kernel's lattice mass beyond R (sigma 1.5 on a 24 x 24
    grid, so the dropped mass is measurable), for random maps and for the worst case: one-hot
    opposite predictions on pixels of opposite colours (t = +1, ||p_i - p_j||^2 = 2)."""
    sigma = 1.5
    torch.manual_seed(4)
    colours, probs = torch.rand(1, 3, 24, 24), torch.randn(1, 5, 24, 24).softmax(1)
    bound = window_error_bound(sigma, radius)
    err = abs(float(feature_similarity(colours, probs, 2.5, sigma)
                    - feature_similarity(colours, probs, 2.5, sigma, window=radius)))
    assert 0 < err <= bound
    checker = (torch.arange(24)[:, None] + torch.arange(24)[None, :]) % 2
    worst_c = checker.float().expand(1, 3, 24, 24)  # d = 1 between unequal neighbours
    worst_p = torch.stack([checker, 1 - checker]).float()[None]
    gap = abs(float(feature_similarity(worst_c, worst_p, 2.5, sigma)
                    - feature_similarity(worst_c, worst_p, 2.5, sigma, window=radius)))
    assert gap <= bound


def test_stated_window_numbers():
    """docs/methods/icam.md: at R = 4 sigma the window drops e^-8 of the continuous kernel's mass;
    on the lattice (sigma 5, R 20) it is 3.36e-4, so |error| <= 6.7e-4."""
    tail = kernel_tail_mass(5.0, 20.0)
    assert tail == pytest.approx(math.exp(-8), rel=0.01) and tail == pytest.approx(3.362e-4, rel=1e-3)
    assert window_error_bound(5.0, 20.0) == pytest.approx(6.725e-4, rel=1e-3)
    assert kernel_tail_mass(5.0, 0.0) == pytest.approx(1 - 1 / (2 * math.pi * 25), rel=1e-3)  # all but the centre


def test_gradient_reaches_only_the_probabilities_and_no_grad_input_works():
    torch.manual_seed(5)
    images = torch.randn(2, 3, 16, 16, requires_grad=True)
    colours = image_colours(images, (4, 4))
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = feature_similarity(colours, logits.softmax(1))
    loss.backward()
    assert images.grad is None and logits.grad.abs().sum() > 0
    plain = feature_similarity(colours, logits.detach().softmax(1))
    assert not plain.requires_grad and float(plain) == pytest.approx(loss.item())


def test_image_colours_undo_the_normalisation():
    rgb = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = (rgb - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(image_colours(x, (2, 2)), rgb[:, :, :2, :2])
