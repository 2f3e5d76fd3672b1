"""AEFT-GPP (docs/methods/aeft.md): GPP on hand-made maps, the gate on a hand case, the signed
logit, the triplet's mask, negatives (a property test over random label sets), the margin and
hard-mining rule, the phases with their poly schedule, the inference order (ReLU after
upsampling), and a kill-and-resume across the phase switch that ends bit-identical."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsss.cams import METHODS
from wsss.cams.aeft import AEFT
from wsss.cams.gpp import Gate, GatedPyramidPooling, pyramid, signed_logits
from wsss.cams.inference import accumulate_views
from wsss.cams.triplet import (NO_NEGATIVE, attraction, max_norm, positive_mask, repulsion, select_negatives,
                               triplet_vectors)
from wsss.data.synthetic import generate
from wsss.engine import StepContext, Trainer, seed_everything
from wsss.errors import ConfigError

# ------------------------------------------------------------------------------------------ GPP

A4 = torch.tensor([[1., 1., -2., -2.],
                   [1., 1., -2., -2.],
                   [3., 3., 4., 4.],
                   [3., 3., 4., 4.]])[None, None]
# bilinear 2 -> 4, corners not aligned: output centres at source -0.25, 0.25, 0.75, 1.25 (clamped)
UP2 = torch.tensor([[1., 0.], [0.75, 0.25], [0.25, 0.75], [0., 1.]])


def test_pyramid_pools_the_signed_map_to_r_by_r_grids():
    p1, p2, p4, p8 = pyramid(A4, grids=(1, 2, 4, 8))
    assert all(p.shape == A4.shape for p in (p1, p2, p4, p8))
    # 1 x 1: the signed mean (24 / 16), not the mean of relu(A) (32 / 16)
    assert torch.allclose(p1, torch.full_like(A4, 1.5))
    # 2 x 2 grid = the means of the 2 x 2 blocks, upsampled bilinearly
    pooled = torch.tensor([[1., -2.], [3., 4.]])
    assert torch.allclose(p2[0, 0], UP2 @ pooled @ UP2.T)
    assert p2[0, 0, 0, 1].item() == pytest.approx(0.75 * 1 + 0.25 * -2)
    # the map's own grid, and a finer one (pixels repeated, then averaged back), give A itself
    assert torch.allclose(p4, A4) and torch.allclose(p8, A4)
    # linear in A: the negative map pools to the negative pyramid
    assert all(torch.allclose(n, -p) for n, p in zip(pyramid(-A4, (1, 2, 4, 8)), (p1, p2, p4, p8)))


def test_pyramid_grid_is_an_output_size_not_a_kernel():
    x = torch.arange(64.).reshape(1, 1, 8, 8)
    small = F.adaptive_avg_pool2d(x, (2, 2))
    assert small.shape[-2:] == (2, 2)  # r = 2 -> 2 x 2 cells of 4 x 4 pixels
    assert small[0, 0, 0, 0].item() == x[0, 0, :4, :4].mean().item()
    [p2] = pyramid(x, grids=(2,))
    assert p2.shape == x.shape and p2.unique().numel() > 4


def zero_gates(module):
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module


def test_gate_with_zero_weights_averages_the_signed_inputs():
    u, v = torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5)
    gate = zero_gates(Gate(3))
    a, b = gate.weights(u, v)
    assert a.shape == b.shape == (2, 2, 5, 5) and torch.all(a == 0.5) and torch.all(b == 0.5)
    assert torch.allclose(gate(u, v), (u + v) / 4, atol=1e-6)


def test_gate_on_a_hand_case():
    """One channel; only the centre taps: a_0 = sigmoid(w relu(u)), b_1 = sigmoid(w' relu(-v))."""
    gate = zero_gates(Gate(1))
    with torch.no_grad():
        gate.att_p[0].weight[0, 0, 1, 1] = math.log(3.0) / 2   # a_0 = sigmoid(ln 3) = 0.75 at u = 2
        gate.att_n[0].weight[1, 1, 1, 1] = math.log(4.0)       # b_1 = sigmoid(ln 4) = 0.8 at v = -1
    u = torch.tensor([[[[2.0]]]])
    v = torch.tensor([[[[-1.0]]]])
    a, b = gate.weights(u, v)
    assert a.flatten().tolist() == pytest.approx([0.75, 0.5])  # att_p sees [relu u, relu v] = [2, 0]
    assert b.flatten().tolist() == pytest.approx([0.5, 0.8])   # att_n sees [relu -u, relu -v] = [0, 1]
    # g = (relu(u) a_0 + relu(v) a_1) / 2 - (relu(-u) b_0 + relu(-v) b_1) / 2 = (1.5 + 0) / 2 - (0 + 0.8) / 2
    assert gate(u, v).item() == pytest.approx(0.35)
    # the sign is kept: the same magnitudes with u and v negated
    assert gate(-u, -v).item() == pytest.approx((0.0 + 1 * 0.5) / 2 - (2 * 0.5 + 0) / 2)


def test_gpp_fuses_coarse_to_fine():
    """With every gate at 1/2 weights, g(u, v) = (u + v) / 4, so the nesting
    g3(g2(g1(P2, P4), P8), P16) weighs the coarsest level 1/64 and the finest 1/4."""
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    gpp = zero_gates(GatedPyramidPooling(3))
    assert [n for n, _ in gpp.named_parameters()] == [
        f"gconv{i}.att_{s}.0.weight" for i in (1, 2, 3) for s in ("p", "n")]
    assert gpp.gconv1.att_p[0].weight.shape == (2, 6, 3, 3)  # 2C -> 2, 3 x 3, no bias
    p2, p4, p8, p16 = pyramid(x)
    expected = p2 / 64 + p4 / 64 + p8 / 16 + p16 / 4
    assert torch.allclose(gpp(x), expected, atol=1e-6)


def test_signed_logit():
    cams = torch.tensor([[[[2.0, -1.0, 2.0, -3.0]]]])
    gated = torch.tensor([[[[3.0, -2.0, -5.0, 1.0]]]])
    # relu A relu G = [6, 0, 0, 0], relu(-A) relu(-G) = [0, 2, 0, 0]; mixed signs count for nothing
    assert signed_logits(cams, gated).item() == pytest.approx((6 - 2) / 4)


# -------------------------------------------------------------------------------------- triplet

def test_max_norm_and_the_soft_positive_mask():
    cams = torch.tensor([[[[0., 1., 2., 3., 4.]], [[9., 9., 9., 9., 0.]]]])  # (1, 2, 1, 5)
    assert torch.allclose(max_norm(cams)[0, 0, 0], torch.tensor([0., 1., 2., 3., 4.]) / 4, atol=1e-5)
    assert max_norm(cams).max() < 1
    labels = torch.tensor([[1., 0.]])  # class 1 is strong but absent: it must not count
    mask = positive_mask(cams, labels, (1, 5), threshold=0.6)
    assert mask.shape == (1, 1, 1, 5)
    assert torch.allclose(mask.flatten(), torch.tensor([0., 0.25, 0.5, 0., 0.]), atol=1e-4)
    cams.requires_grad_(True)
    positive_mask(cams, labels, (2, 10)).sum().backward()
    assert cams.grad.abs().sum() > 0  # soft and differentiable (AEFT detaches it by option)


def test_attraction_is_the_l1_mean_over_every_class():
    g = torch.zeros(2, 3, 2, 2)
    g[0, 0] = 2.0
    g[1, 2] = -1.0
    gp = g.clone()
    gp[0, 0] = 1.0
    gp[0, 1] = 5.0  # an absent class: masked out
    labels = torch.tensor([[1., 0., 0.], [0., 0., 1.]])
    # |1 - 2| on one entry of 2 x 3; relu(-1) = 0 on both sides for image 1
    assert attraction(g, gp, labels).item() == pytest.approx(1 / 6)


def test_negatives_never_share_a_class():
    """Property test over random label sets: the drawn negative is another image with no
    class in common; NO_NEGATIVE exactly when none exists (or the anchor has no class)."""
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    seen_none = seen_some = 0
    for _ in range(400):
        b, c = int(rng.integers(1, 12)), int(rng.integers(1, 7))
        labels = torch.from_numpy((rng.random((b, c)) < rng.uniform(0.1, 0.8)).astype(np.float32))
        neg = select_negatives(labels, gen)
        assert neg.shape == (b,) and neg.dtype == torch.int64
        pos = labels > 0.5
        for i in range(b):
            partners = [j for j in range(b) if j != i and pos[i].any() and not (pos[i] & pos[j]).any()]
            if neg[i] == NO_NEGATIVE:
                assert not partners
                seen_none += 1
            else:
                assert int(neg[i]) in partners
                seen_some += 1
    assert seen_none > 50 and seen_some > 200


def test_negatives_are_drawn_uniformly():
    labels = torch.tensor([[1., 0., 0.], [0., 1., 0.], [0., 0., 1.], [0., 1., 1.], [1., 1., 0.]])
    gen = torch.Generator().manual_seed(1)
    counts = np.zeros(5)
    for _ in range(3000):
        counts[int(select_negatives(labels, gen)[0])] += 1
    assert counts[0] == counts[4] == 0  # itself; shares class 0
    assert np.allclose(counts[1:4] / 3000, 1 / 3, atol=0.04)


def test_a_batch_without_disjoint_images_skips_the_repulsion():
    labels = torch.tensor([[1., 1.], [1., 0.], [1., 1.], [1., 0.]])  # every pair shares class 0
    neg = select_negatives(labels)
    assert torch.all(neg == NO_NEGATIVE)
    anchor, whole = torch.zeros(4, 2, requires_grad=True), torch.zeros(4, 2)
    loss, hard = repulsion(anchor, whole, labels, neg, min_hard=0)
    assert hard == 0 and loss.item() == 0.0


def test_margin_and_hard_mining():
    """d_b = ||anchor_b - whole_n(b) y_b||^2: pairs with d < 0.5 are hard; the loss is the mean of
    0.5 - d over them, and only when there are more than 4."""
    labels = torch.tensor([[1., 0.]] * 6 + [[0., 1.]])
    negatives = torch.tensor([6, 6, 6, 6, 6, 6, NO_NEGATIVE])
    whole = torch.zeros(7, 2)
    whole[6] = torch.tensor([-0.1, 0.3])  # the negative image's response (class 0 absent there)
    d = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.45, 0.6])
    anchor = torch.zeros(7, 2)
    anchor[:6, 0] = -0.1 + d.sqrt()  # (anchor - (-0.1))^2 = d on class 0; class 1 masked by y
    loss, hard = repulsion(anchor, whole, labels, negatives, margin=0.5, min_hard=4)
    assert hard == 5  # 0.6 is not hard; the anchor without a negative is skipped
    assert loss.item() == pytest.approx(np.mean([0.4, 0.3, 0.2, 0.1, 0.05]), abs=1e-6)
    anchor[4, 0] = -0.1 + math.sqrt(0.55)  # now only 4 hard pairs: no loss
    loss, hard = repulsion(anchor, whole, labels, negatives, margin=0.5, min_hard=4)
    assert hard == 4 and loss.item() == 0.0


def test_the_reference_masks_the_negative_by_its_own_labels():
    """mask_by='negative' (the reference): the negative keeps only its own classes, disjoint from
    the anchor's, so the distance is ||anchor||^2 + ||whole_j y_j||^2."""
    labels = torch.tensor([[1., 0.], [0., 1.]])
    anchor = torch.tensor([[0.3, 0.0], [0.0, 0.2]])
    whole = torch.tensor([[-0.5, 0.7], [0.4, -0.6]])
    negatives = torch.tensor([1, 0])
    ours, _ = repulsion(anchor, whole, labels, negatives, margin=1.0, min_hard=0, mask_by="anchor")
    ref, _ = repulsion(anchor, whole, labels, negatives, margin=1.0, min_hard=0, mask_by="negative")
    d_ours = [(0.3 - 0.4) ** 2, (0.2 - 0.7) ** 2]
    d_ref = [0.3 ** 2 + 0.6 ** 2, 0.2 ** 2 + 0.5 ** 2]
    assert ours.item() == pytest.approx(np.mean([1 - d for d in d_ours]))
    assert ref.item() == pytest.approx(np.mean([1 - d for d in d_ref]))


def test_triplet_vectors_on_a_hand_case():
    cams = torch.tensor([[[[0., 1., 4., 10.]], [[1., 1., 1., 1.]]]])  # (1, 2, 1, 4)
    gated = torch.tensor([[[[2., -4., 1., 3.]], [[1., 1., 1., 1.]]]])
    labels = torch.tensor([[1., 0.]])
    anchor, whole = triplet_vectors(cams, gated, labels, low=0.2)
    # class 0: maxnorm = [0, 0.1, 0.4, 1-) -> weak area = first two pixels; F = G / 4
    assert anchor[0, 0].item() == pytest.approx((0.5 - 1.0) / 2, abs=1e-4)
    assert anchor[0, 1].item() == 0.0  # absent class
    assert whole[0].tolist() == pytest.approx([(2 - 4 + 1 + 3) / 16, 1.0], abs=1e-4)


# -------------------------------------------------------------------------------------- method

def tiny_cfg(root, **method):
    return {
        "data": {"dataset": "synthetic", "root": str(root), "train_split": "train"},
        "model": {"backbone": "resnet18", "output_stride": 16, "norm_mode": "train", "weights": None,
                  "backbone_kwargs": {"width": 8}},
        "augment": {"resize_long": None, "hflip": True, "crop": 48},
        "method": {"name": "aeft", "switch_epoch": 2, "warmup_batch_size": 2, "hidden": 16, "min_hard": 0, **method},
        "train": {"epochs": 3, "batch_size": 4, "lr": 0.05, "num_workers": 0, "channels_last": False,
                  "device": "cpu", "seed": 3, "log_every": 1},
    }


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    root = tmp_path_factory.mktemp("aeft") / "data"
    generate(root, seed=4, n_train=8, n_val=1, size=48, workers=1, progress=False)
    return root


def test_phases_batches_and_poly_schedule(syn):
    task = AEFT(tiny_cfg(syn, switch_epoch=18, warmup_batch_size=8), 8)
    assert [task.epoch_batch_size(e, 32) for e in (0, 17, 18, 39)] == [8, 8, 32, 32]
    steps = [10582 // 8] * 18 + [10582 // 32] * 22
    assert task.lr_schedule_steps(steps) == sum(steps) == 31056
    ref = AEFT(tiny_cfg(syn, switch_epoch=18, warmup_batch_size=8, poly_max_step="warmup_batch"), 8)
    assert ref.lr_schedule_steps(steps) == 52880  # train.py:110, N // 8 * 40
    # the reference's lr at its last step: (1 - 31055 / 52880)^0.9 of lr0
    assert (1 - 31055 / 52880) ** 0.9 == pytest.approx(0.45, abs=0.01)
    with pytest.raises(ConfigError, match="negative_mask"):
        AEFT(tiny_cfg(syn, negative_mask="other"), 8)
    with pytest.raises(ConfigError, match="switch_epoch is 0"):
        AEFT(tiny_cfg(syn, switch_epoch=0, poly_max_step="warmup_batch"), 8).lr_schedule_steps([3, 3])


def test_no_lr_multiplier_option_and_parameter_names(syn):
    task = AEFT(tiny_cfg(syn, new_lr_mult=1.0), 8)
    groups = {g["name"]: g["lr_mult"] for g in task.param_groups()["main"]}
    assert groups["new.weight"] == groups["backbone.weight"] == 1.0 and "new.bias" not in groups
    names = {n for n, _ in task.named_parameters()}
    assert {"net.fc8.weight", "net.fc9.weight", "net.gpp.gconv3.att_n.0.weight"} <= names
    assert task.net.fc8.weight.shape == (16, 64, 1, 1) and task.net.fc8.bias is None  # c5 of width 8: 64
    default = {g["name"]: g["lr_mult"] for g in AEFT(tiny_cfg(syn), 8).param_groups()["main"]}
    assert default["new.weight"] == 10.0


def test_gap_baseline_without_gpp(syn):
    torch.manual_seed(0)
    cfg = tiny_cfg(syn, gpp=False)
    task = AEFT(cfg, 8).train()
    assert task.net.gpp is None and not any("gpp" in n for n, _ in task.named_parameters())
    x = torch.randn(2, 3, 48, 48)
    logits, cams, gated = task.net(x)
    assert torch.allclose(logits, cams.mean(dim=(2, 3))) and gated is cams
    out = task.training_step(batch_of(task, cfg, 4), StepContext(epoch=2, cfg=cfg))
    assert torch.isfinite(out["loss"]) and "repel" in out


def batch_of(task, cfg, n):
    from wsss.data import collate

    ds = task.train_dataset(cfg, cfg["data"])
    return collate([ds[i] for i in range(n)])


def test_training_step_before_and_after_the_switch(syn):
    torch.manual_seed(0)
    cfg = tiny_cfg(syn)
    task = AEFT(cfg, 8).train()
    batch = batch_of(task, cfg, 4)
    before = task.training_step(batch, StepContext(epoch=1, cfg=cfg))
    assert set(before) == {"loss", "cls"}
    after = task.training_step(batch, StepContext(epoch=2, cfg=cfg))
    assert {"attract", "repel", "hard", "erased"} <= set(after)
    w = task.opts
    expected = after["cls"] + w["attract_weight"] * after["attract"] + w["repel_weight"] * after["repel"]
    assert after["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_reference_classification_on_the_first_images_only(syn):
    torch.manual_seed(0)
    cfg = tiny_cfg(syn, cls_samples=2)
    task = AEFT(cfg, 8).eval()  # no dropout / BN noise: compare the two heads of the same batch
    batch = batch_of(task, cfg, 4)
    logits, _, _ = task.net(batch["image"])
    assert task.classification(logits, batch["label"]).item() == pytest.approx(
        F.multilabel_soft_margin_loss(logits[:2], batch["label"][:2]).item(), rel=1e-6)


def test_inference_relus_each_view_after_upsampling():
    """AEFT: upsample every view (the flipped one too) to the image size, then ReLU, then sum.
    ReLU before upsampling, or the flips summed first, give other maps."""
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(2, 1, 3, 3, generator=g)  # view 0 and its flip, one class

    def view_fn(x, labels):
        return raw

    [out] = accumulate_views(view_fn, [torch.zeros(1, 3, 12, 12)], (10, 10), [[0]], flip=True, hr_stride=1,
                             activation=F.relu, combine=lambda m: m)
    up = lambda m: F.interpolate(m, (10, 10), mode="bilinear", align_corners=False)  # noqa: E731
    expected = F.relu(up(raw[:1])) + F.relu(up(raw[1:])).flip(-1)
    assert torch.allclose(out["hr_cam"], expected[0], atol=1e-6)
    [relu_first] = accumulate_views(lambda x, labels: F.relu(raw), [torch.zeros(1, 3, 12, 12)], (10, 10), [[0]],
                                    flip=True, hr_stride=1, combine=lambda m: m)
    assert not torch.allclose(relu_first["hr_cam"], out["hr_cam"], atol=1e-3)


def test_the_method_infers_with_relu_after_upsampling(syn):
    task = AEFT(tiny_cfg(syn), 8).eval()
    assert task.relu_after_upsample
    x = torch.randn(1, 3, 48, 48)
    with torch.inference_mode():
        raw = task.cam_forward(torch.cat([x, x.flip(-1)]))
        [maps] = task.infer_cams([x[0]], (48, 48), [[1, 3]], hr_stride=1)
    up = F.interpolate(raw[:, [1, 3]], (48, 48), mode="bilinear", align_corners=False)
    summed = F.relu(up[0]) + F.relu(up[1]).flip(-1)
    expected = summed / (summed.amax(dim=(1, 2), keepdim=True) + 1e-5)
    assert torch.allclose(maps["hr_cam"], expected, atol=1e-5)


class Kill(Exception):
    pass


class KilledAEFT(AEFT):
    kill_at = None

    def training_step(self, batch, ctx):
        if ctx.step == self.kill_at:
            raise Kill()
        return super().training_step(batch, ctx)


def fit(cfg, exp, kill_at=None):
    seed_everything(0)
    task = KilledAEFT(copy.deepcopy(cfg), 8)
    task.kill_at = kill_at
    trainer = Trainer(copy.deepcopy(cfg), task, task.train_dataset(cfg, cfg["data"]), exp)
    trainer.fit(resume=True)
    return trainer


@pytest.mark.slow
def test_kill_and_resume_across_the_switch_is_bit_identical(syn, tmp_path):
    """Epochs 0-1 at batch 2 (4 steps each), the switch at epoch 2 (batch 4, 2 steps): killed in
    epoch 2, resumed from the epoch-1 checkpoint, the weights equal an uninterrupted run's."""
    cfg = tiny_cfg(syn)
    full = fit(cfg, tmp_path / "full")
    assert full.epoch_steps == [4, 4, 2] and full.step == 10
    with pytest.raises(Kill):
        fit(cfg, tmp_path / "cut", kill_at=9)
    resumed = fit(cfg, tmp_path / "cut")
    assert resumed.step == 10
    a, b = full.task.state_dict(), resumed.task.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    records = [r for r in map(eval_json, (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines())
               if r["kind"] == "epoch"]
    assert [("repel" in r) for r in records] == [False, False, True]


def eval_json(line):
    import json

    return json.loads(line)


def test_registered():
    assert METHODS.get("aeft") is AEFT
