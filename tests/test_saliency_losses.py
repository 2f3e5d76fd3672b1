"""C2AM contrastive losses and the C2AM-H hint loss on hand-computed cases."""

import math

import pytest
import torch
import torch.nn.functional as F

from wsss.saliency import losses as L

# Three 2-D embeddings at 0, 45 and 90 degrees: cosines 1, 1/sqrt(2), 0.
EMB = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
R = 1 / math.sqrt(2)


def test_cos_simi_is_clamped():
    sim = L.cos_simi(EMB, EMB)
    expected = torch.tensor([[0.9995, R, 0.0005], [R, 0.9995, R], [0.0005, R, 0.9995]])
    assert torch.allclose(sim, expected, atol=1e-6)
    # anti-parallel vectors: cosine -1 clamps to the lower bound, never 0 or negative
    assert L.cos_simi(torch.tensor([[1.0, 0.0]]), torch.tensor([[-3.0, 0.0]])).item() == pytest.approx(5e-4)


def test_rank_weights_by_hand():
    sim = L.cos_simi(EMB, EMB)
    e = math.exp
    # row 0: order (0, 1, 2) -> ranks 0, 1, 2 -> shifted -1, 0, 1
    # row 1: values (R, .9995, R) -> order (1, 0, 2) (tie kept in column order) -> ranks 1, 0, 2
    # row 2: order (2, 1, 0) -> ranks 2, 1, 0
    expected = torch.tensor([[e(0.25), 1.0, e(-0.25)], [1.0, e(0.25), e(-0.25)], [e(-0.25), 1.0, e(0.25)]])
    assert torch.allclose(L.rank_weights(sim, 0.25), expected, atol=1e-6)
    assert torch.allclose(L.rank_weights(sim, 0.5), expected ** 2, atol=1e-6)


def test_sim_max_loss_by_hand():
    l1, l2, l3 = -math.log(0.9995), -math.log(R), -math.log(0.0005)
    a, b = math.exp(0.25), math.exp(-0.25)
    expected = (3 * l1 * a + 3 * l2 + 2 * l3 * b + l2 * b) / 9
    assert L.sim_max_loss(EMB, 0.25).item() == pytest.approx(expected, rel=1e-5)


def test_sim_min_loss_by_hand():
    bg = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    fg = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # sims: bg0.fg0 = 0 -> 5e-4, bg0.fg1 = R, bg1.fg0 = 1 -> .9995, bg1.fg1 = R
    terms = [-math.log(1 - 5e-4), -math.log(1 - R), -math.log(1 - 0.9995), -math.log(1 - R)]
    assert L.sim_min_loss(bg, fg).item() == pytest.approx(sum(terms) / 4, rel=1e-5)


def test_contrastive_losses_push_fg_from_bg():
    torch.manual_seed(0)
    fg = torch.randn(4, 8, requires_grad=True)
    bg = torch.randn(4, 8, requires_grad=True)
    opt = torch.optim.SGD([fg, bg], lr=0.5)
    first = None
    for _ in range(200):
        opt.zero_grad()
        loss = sum(L.contrastive_losses(fg, bg).values())
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first
    assert L.sim_min_loss(bg, fg).item() < 0.05
    sim = F.normalize(fg, dim=1) @ F.normalize(bg, dim=1).T
    assert sim.max() < 0.05  # every fg ended up (nearly) orthogonal to, or opposed to, every bg


def test_clamp_stops_gradients_outside_the_range():
    a = torch.tensor([[1.0, 0.0]], requires_grad=True)
    b = torch.tensor([[-1.0, 0.1]], requires_grad=True)  # cosine < 0: clamped to 5e-4
    L.sim_min_loss(a, b).backward()
    assert torch.equal(a.grad, torch.zeros_like(a))


def test_hint_target_and_threshold():
    assert L.hint_target(0.1) == pytest.approx(0.95)
    assert L.hint_target(0.0) == 1.0
    hint = torch.tensor([[[0.39, 0.4, 0.41, 0.0]]])  # (1, 1, 4): same size -> no resampling
    mask = L.hint_mask(hint, (1, 4), threshold=0.4)
    assert mask.flatten().tolist() == [False, True, True, False]
    assert L.hint_mask(hint, (1, 4), threshold=0.3).flatten().tolist() == [True, True, True, False]


def test_hint_mask_resizes_to_the_map():
    hint = torch.zeros(1, 32, 32)
    hint[:, :, :16] = 1.0  # left half hinted
    mask = L.hint_mask(hint, (4, 4), 0.4)[0, 0]
    assert mask[:, :2].all() and not mask[:, 2:].any()


def test_hint_loss_by_hand():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, 3.0]]]], requires_grad=True)
    hint = torch.tensor([[[0.9, 0.1], [0.5, 0.3]]])  # hinted: 2.0 and 0.5
    loss = L.hint_loss(logits, hint, threshold=0.4, smoothing=0.1)

    def bce(z, t):
        s = 1 / (1 + math.exp(-z))
        return -(t * math.log(s) + (1 - t) * math.log(1 - s))

    assert loss.item() == pytest.approx((bce(2.0, 0.95) + bce(0.5, 0.95)) / 2, rel=1e-5)
    loss.backward()
    g = logits.grad[0, 0]
    assert g[0, 1] == 0 and g[1, 1] == 0 and g[0, 0] != 0 and g[1, 0] < 0  # only hinted pixels, pushed up


def test_hint_loss_without_hinted_pixels_is_zero_not_nan():
    logits = torch.randn(2, 1, 3, 3, requires_grad=True)
    loss = L.hint_loss(logits, torch.zeros(2, 3, 3), threshold=0.4)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
