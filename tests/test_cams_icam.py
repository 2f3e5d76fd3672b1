"""ICAM (wsss/cams/icam.py): the importance sampler against its pmf, gradients through the
gathered values only, every loss term on hand-computable inputs, the total with its weights,
and the inference rule on a hand-made map (docs/methods/icam.md)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from wsss.cams import build_method
from wsss.cams.icam import keep_argmax, label_condition, probs_to_logits, sample_probs, seam_pcm_input
from wsss.engine import StepContext
from wsss.errors import ConfigError
from wsss.metrics import cam_to_labels

C = 2  # foreground classes of the hand cases


def softplus(v):
    return math.log1p(math.exp(v))


def bce(logit, target):
    """One element of the multi-label soft-margin loss."""
    return target * softplus(-logit) + (1 - target) * softplus(logit)


def logit_eps(p, eps=1e-3):
    q = p * (1 - eps)
    return math.log(q + eps) - math.log(1 - q)


def tiny_icam(**method):
    cfg = {"model": {"backbone": "resnet18", "output_stride": 8, "norm_mode": "train", "weights": None,
                     "backbone_kwargs": {"width": 8}},
           "method": {"name": "icam", **method}}
    return build_method("icam", cfg, C)


def const_map(values, h=2, w=3):
    """(1, K, h, w) map whose channel k is the constant values[k]."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1).expand(1, len(values), h, w).clone()


def test_probs_to_logits_known_values():
    p = torch.tensor([0.0, 0.5, 1.0, 0.2])
    out = probs_to_logits(p)
    assert out.tolist() == pytest.approx([math.log(1e-3), 0.0, -math.log(1e-3), logit_eps(0.2)], rel=1e-4, abs=1e-6)


def test_sampler_draws_follow_the_pmf():
    """Chi-square goodness of fit of 60000 draws from a 2 x 3 map (unnormalised weights) at
    significance 1e-4: with the fixed seed the test is deterministic, and the significance leaves a
    true pmf a 1-in-10^4 chance of failing, so a change of seed cannot make it flaky either."""
    weights = torch.tensor([[0.05, 0.10, 0.15], [0.20, 0.22, 0.28]]) * 0.37
    pmf = (weights / weights.sum()).flatten().numpy()
    g = torch.Generator().manual_seed(0)
    draws = sample_probs(weights.view(1, 1, 2, 3), 60000, generator=g).flatten()
    # each draw is one of the map's values; count draws per pixel (the values are distinct)
    values = weights.flatten()
    counts = np.array([(draws == v).sum().item() for v in values])
    assert counts.sum() == 60000
    chi2, p_value = stats.chisquare(counts, pmf * 60000)
    assert p_value > 1e-4, (counts, chi2)
    assert chi2 < stats.chi2.ppf(1 - 1e-4, df=5)
    # the test has power: the same draws reject a pmf with two entries swapped
    swapped = pmf[[0, 1, 2, 3, 5, 4]]
    assert stats.chisquare(counts, swapped * 60000).pvalue < 1e-6


def test_sampler_is_per_image_and_channel_with_replacement():
    probs = torch.zeros(2, 3, 1, 4)
    probs[0, 0, 0, 1] = 1.0  # a single pixel: every draw is it (with replacement: 50 draws of 4 pixels)
    probs[0, 1, 0, 2:] = 0.5
    probs[1, 2, 0, 3] = 0.3
    probs[1, 0] = 0.7  # constant
    out = sample_probs(probs, 50, generator=torch.Generator().manual_seed(1))
    assert out.shape == (2, 3, 50)
    assert (out[0, 0] == 1.0).all() and (out[0, 1] == 0.5).all() and (out[1, 2] == 0.3).all()
    assert (out[1, 0] == 0.7).all()
    assert (out[0, 2] == 0).all() and (out[1, 1] == 0).all()  # all-zero channels: uniform draws of zeros


def test_gradient_reaches_only_the_gathered_values():
    torch.manual_seed(2)
    probs = torch.rand(1, 2, 3, 3, requires_grad=True)
    upstream = torch.randn(1, 2, 7)
    out = sample_probs(probs, 7, generator=torch.Generator().manual_seed(3))
    (out * upstream).sum().backward()
    # the same draws, replayed: each pixel's gradient is the sum of the upstream over its draws
    index = torch.multinomial(probs.detach().view(2, 9), 7, replacement=True,
                              generator=torch.Generator().manual_seed(3))
    expected = torch.zeros(2, 9).scatter_add_(1, index, upstream.view(2, 7)).view(1, 2, 3, 3)
    torch.testing.assert_close(probs.grad, expected)
    undrawn = torch.ones(2, 9, dtype=torch.bool).scatter_(1, index, False).view(1, 2, 3, 3)
    assert (probs.grad[undrawn] == 0).all() and undrawn.any()


def view_outputs(bg, fg, rv_bg, rv_fg, logits, h=2, w=3):
    """Hand-made outputs of ICAMNet for one image: constant probability maps (background first)."""
    return {"logits": const_map(logits, h, w), "probs": const_map([bg, *fg], h, w),
            "rv_probs": const_map([rv_bg, *rv_fg], h, w)}


def test_per_view_terms_on_hand_inputs():
    """GAP of constant logits is the logit; a constant map makes every importance sample its value;
    the revised-CAM term takes the max (here: the constant) of every channel, background included."""
    task = tiny_icam(num_samples=5)
    out = view_outputs(0.5, [0.3, 0.2], 0.6, [0.1, 0.3], logits=[0.0, 1.5, -2.0])
    y = torch.tensor([[1.0, 0.0]])
    terms = task.view_terms(out, y, torch.tensor([[1.0, 1.0, 0.0]]))
    assert float(terms["gap"]) == pytest.approx((bce(1.5, 1) + bce(-2.0, 0)) / 2, rel=1e-6)
    assert float(terms["is"]) == pytest.approx((bce(logit_eps(0.3), 1) + bce(logit_eps(0.2), 0)) / 2, rel=1e-5)
    rv = (bce(logit_eps(0.6), 1) + bce(logit_eps(0.1), 1) + bce(logit_eps(0.3), 0)) / 3
    assert float(terms["rv"]) == pytest.approx(rv, rel=1e-5)
    # max pooling: a single larger pixel decides the channel's score
    out["rv_probs"][0, 1, 1, 2] = 0.9
    terms = task.view_terms(out, y, torch.tensor([[1.0, 1.0, 0.0]]))
    rv = (bce(logit_eps(0.6), 1) + bce(logit_eps(0.9), 1) + bce(logit_eps(0.3), 0)) / 3
    assert float(terms["rv"]) == pytest.approx(rv, rel=1e-5)


def test_equivariance_terms_on_hand_inputs():
    """Constant maps: resizing changes nothing, every term is the difference of the constants,
    over all channels (background included)."""
    o1 = view_outputs(0.2, [0.5, 0.3], 0.1, [0.6, 0.3], logits=[0, 0, 0], h=4, w=6)
    o2 = view_outputs(0.4, [0.4, 0.2], 0.3, [0.3, 0.4], logits=[0, 0, 0], h=2, w=3)
    er, ecr = type(tiny_icam()).equivariance_terms(o1, o2)
    p1, r1, p2, r2 = [0.2, 0.5, 0.3], [0.1, 0.6, 0.3], [0.4, 0.4, 0.2], [0.3, 0.3, 0.4]

    def l1(a, b):
        return sum(abs(u - v) for u, v in zip(a, b)) / 3

    assert float(er) == pytest.approx(l1(p1, p2) + l1(r1, r2) + l1(p1, r1) + l1(p2, r2), rel=1e-6)
    assert float(ecr) == pytest.approx(l1(p1, r2) + l1(p2, r1), rel=1e-6)


class StubNet(torch.nn.Module):
    """Stands in for ICAMNet: fixed outputs per input size (scale 1, then the 0.3 rescale)."""

    def __init__(self, by_size):
        super().__init__()
        self.by_size = by_size
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape[-2:]))
        return self.by_size[tuple(x.shape[-2:])]


def test_total_loss_weights_every_term_as_the_reference():
    """L = 0.2 (G1 + G2) + 0.8 (I1 + I2) + (R1 + R2) + ER + ECR + 0.5 FS, on stub outputs."""
    task = tiny_icam(num_samples=4, fs_sigma=1.0)
    o1 = view_outputs(0.5, [0.3, 0.2], 0.6, [0.1, 0.3], logits=[0.0, 1.5, -2.0], h=4, w=4)
    o2 = view_outputs(0.4, [0.4, 0.2], 0.3, [0.3, 0.4], logits=[0.0, 0.5, -1.0], h=2, w=2)
    o1["probs"][0, :, :2] = torch.tensor([0.1, 0.8, 0.1]).view(3, 1, 1)  # top half: another prediction
    task.net = StubNet({(10, 10): o1, (3, 3): o2})
    image = torch.zeros(1, 3, 10, 10)
    image[:, :, :5] = 1.5  # top half brighter: the FS term sees two colours
    batch = {"image": image, "label": torch.tensor([[1.0, 0.0]])}
    out = task.training_step(batch, StepContext())
    assert task.net.seen == [(10, 10), (3, 3)]  # 10 x 0.3 = 3 (floor), as F.interpolate(scale_factor=0.3)
    expected = (0.2 * out["gap"] + 0.8 * out["is"] + out["rv"] + out["er"] + out["ecr"] + 0.5 * out["fs"])
    assert float(out["loss"]) == pytest.approx(float(expected), rel=1e-6)
    assert float(out["fs"]) == pytest.approx(float(task.feature_similarity(image, o1["probs"])), rel=1e-6)
    assert float(out["fs"]) != 0
    y = [1.0, 0.0]
    g = sum((bce(a, y[0]) + bce(b, y[1])) / 2 for a, b in ((1.5, -2.0), (0.5, -1.0)))
    assert float(out["gap"]) == pytest.approx(g, rel=1e-6)
    # ablation switches of the reference: loss_weight 0 (GAP only), 1 (IS only), fs_weight 0
    for opts, gone in (({"loss_weight": 0.0}, "is"), ({"loss_weight": 1.0}, "gap"), ({"fs_weight": 0.0}, "fs")):
        t = tiny_icam(num_samples=4, **opts)
        t.net = StubNet({(10, 10): o1, (3, 3): o2})
        assert float(t.training_step(batch, StepContext())[gone]) == 0
    # ablation weights of the PCM terms: the total drops exactly the weighted terms
    t = tiny_icam(num_samples=4, fs_sigma=1.0, rv_weight=0.0, eq_weight=0.5)
    t.net = StubNet({(10, 10): o1, (3, 3): o2})
    part = t.training_step(batch, StepContext())
    expected = 0.2 * part["gap"] + 0.8 * part["is"] + 0.5 * (part["er"] + part["ecr"]) + 0.5 * part["fs"]
    assert float(part["loss"]) == pytest.approx(float(expected), rel=1e-6)
    assert float(part["rv"]) == pytest.approx(float(out["rv"]), rel=1e-6)  # reported, not weighted


def test_label_condition_and_argmax_rule_by_hand():
    p = torch.tensor([0.5, 0.3, 0.2]).view(1, 3, 1, 1)
    out = label_condition(p, torch.tensor([[1.0, 0.0]]))
    assert out.flatten().tolist() == pytest.approx([0.5 / 0.8, 0.3 / 0.8, 0.0])
    m = torch.tensor([[[0.6, 0.2], [0.1, 0.3]], [[0.3, 0.4], [0.1, 0.2]]])
    kept = keep_argmax(m)
    assert torch.equal(kept, torch.tensor([[[0.6, 0.0], [0.1, 0.3]], [[0.0, 0.4], [0.1, 0.0]]]))  # ties keep both


def test_inference_rule_on_a_hand_made_map():
    """combine: arg-max suppression, max normalisation, background = 1 - sum; scored against the
    stored background a pixel is foreground where its kept value exceeds 0.5."""
    task = tiny_icam()
    bg = torch.full((1, 2, 2), 0.3)  # the mean background probability plays no part
    fg = torch.tensor([[[0.6, 0.2], [0.1, 0.3]], [[0.3, 0.4], [0.1, 0.2]]])
    out = task.combine(torch.cat([bg, fg]))
    a, b = 1 / (0.6 + 1e-5), 1 / (0.4 + 1e-5)
    expected_fg = torch.tensor([[[0.6 * a, 0.0], [0.1 * a, 0.3 * a]], [[0.0, 0.4 * b], [0.1 * b, 0.0]]])
    torch.testing.assert_close(out[1:], expected_fg)
    torch.testing.assert_close(out[0], 1 - expected_fg.sum(0))
    labels = cam_to_labels({"keys": np.array([0, 1]), "hr_cam": out[1:].numpy(), "hr_cam_bg": out[0].numpy()})
    # (0,0): class 1 at ~1; (0,1): class 2 at ~1; (1,0): 0.17 + 0.25 < bg 0.58; (1,1): 0.49999 < 0.5
    assert labels.tolist() == [[1, 2], [0, 0]]


def test_infer_cams_takes_the_mean_over_views_and_conditions_on_the_label():
    """Two scales x flip = 4 views of constant stub maps: the saved maps are combine(mean)."""
    task = tiny_icam().eval()

    class Views(torch.nn.Module):
        def forward(self, x):  # probs depend on the scale only; rv_probs = probs
            v = 0.1 * x.shape[-1] / 8
            probs = const_map([0.5 - v, 0.3 + v, 0.2], x.shape[-2] // 8, x.shape[-1] // 8).expand(x.shape[0], -1, -1, -1)
            return {"probs": probs, "rv_probs": probs}

    task.net = Views()
    inputs = [torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 8, 8)]
    [maps] = task.infer_cams(inputs, (16, 16), [np.array([0])])
    # per view: [0.5 - v, 0.3 + v, 0] / 0.8 (class 2 absent); v = 0.2 and 0.1
    fg = np.mean([0.5 / 0.8, 0.4 / 0.8])
    assert maps["hr_cam"].shape == (1, 16, 16)
    torch.testing.assert_close(maps["hr_cam"], torch.full((1, 16, 16), fg / (fg + 1e-5)))
    torch.testing.assert_close(maps["hr_cam_bg"], 1 - maps["hr_cam"][0])


def test_seam_pcm_input_by_hand():
    z = torch.tensor([[[3.0, 0.0]], [[2.0, -1.0]], [[1.0, 4.0]]])[None]  # (1, 3, 1, 2), background first
    out = seam_pcm_input(z)
    # relu, /max per channel: c1 = [1, 0], c2 = [0.25, 1]; background = 1 - max(c1, c2); non-max zeroed
    n1, n2 = (2 - 1e-5) / (2 + 1e-5), (1 - 1e-5) / (4 + 1e-5)
    m2 = (4 - 1e-5) / (4 + 1e-5)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([[1 - n1, 1 - m2], [n1, 0.0], [0.0, m2]]))
    assert n2 < n1  # (the suppressed value)


def test_pcm_input_option_and_network_outputs():
    torch.manual_seed(0)
    for mode in ("logits", "seam"):
        task = tiny_icam(pcm_input=mode).eval()
        with torch.no_grad():
            out = task.net(torch.randn(2, 3, 32, 32))
        assert out["probs"].shape == out["rv_probs"].shape == (2, C + 1, 4, 4)
        torch.testing.assert_close(out["probs"].sum(1), torch.ones(2, 4, 4))
        torch.testing.assert_close(out["rv_probs"].sum(1), torch.ones(2, 4, 4))
    task = tiny_icam(pcm_input="logits").train()
    out = task.net(torch.randn(1, 3, 32, 32))
    out["rv_probs"][:, 1].sum().backward()
    assert task.net.fc8.weight.grad.abs().sum() > 0  # raw logits, not detached: PCM trains fc8 too
    task = tiny_icam(pcm_input="seam").train()
    out = task.net(torch.randn(1, 3, 32, 32))
    out["rv_probs"][:, 1].sum().backward()
    assert task.net.fc8.weight.grad is None and task.net.pcm.f9.weight.grad.abs().sum() > 0


def test_infer_heads_option_picks_the_maps():
    """cam_forward: 0.5 p + 0.5 p_rv (the reference), p alone, p_rv alone; unknown names refused."""
    o = view_outputs(0.5, [0.3, 0.2], 0.1, [0.6, 0.3], logits=[0, 0, 0])
    for heads, want in (("mean", [0.3, 0.45, 0.25]), ("cam", [0.5, 0.3, 0.2]), ("rv", [0.1, 0.6, 0.3])):
        task = tiny_icam(infer_heads=heads)
        task.net = StubNet({(2, 3): o})
        got = task.cam_forward(torch.zeros(1, 3, 2, 3))
        torch.testing.assert_close(got, const_map(want, 2, 3))
    with pytest.raises(ConfigError, match="infer_heads"):
        tiny_icam(infer_heads="max")
