"""psa's AffinityNet: feature affinities, its loss on dual-alpha labels, its walk, its checkpoints."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsss.affinity import AFFINITY_TASKS
from wsss.affinity.net import AffinityTask
from wsss.affinity.pairs import PairIndex, search_offsets
from wsss.affinity.psa import (PsaAffinityTask, build_psa_net, grid_feature_affinities, labels_at_grid,
                               pair_affinities)
from wsss.affinity.random_walk import RW_PRESETS
from wsss.engine import StepContext
from wsss.errors import CheckpointError, ConfigError, DataError

TINY = {"model": {"backbone": "resnet18", "backbone_kwargs": {"width": 8}, "output_stride": 8,
                  "norm_mode": "frozen_affine", "frozen_prefixes": ["conv1", "bn1"]},
        "method": {"name": "psa", "radius": 5}}


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return build_psa_net(TINY)


def naive_affinity(f, p, q):
    return math.exp(-float((f[:, p[0], p[1]] - f[:, q[0], q[1]]).abs().mean()))


def test_registry_selects_the_network_by_name():
    assert AFFINITY_TASKS.get("irn") is AffinityTask and AFFINITY_TASKS.get("psa") is PsaAffinityTask
    with pytest.raises(ConfigError, match="irn, psa"):
        AFFINITY_TASKS.get("psa2")


def test_pair_affinities_match_a_naive_loop():
    torch.manual_seed(0)
    feats = torch.randn(2, 5, 9, 12)
    pairs = PairIndex(5, (9, 12))
    aff = pair_affinities(feats, pairs)
    assert aff.shape == (2, 34, 5 * 4)  # 34 offsets; sources [0, 9 - 4) x [4, 12 - 4)
    for b in range(2):
        for d, (dy, dx) in enumerate(pairs.offsets):
            for s, src in enumerate(pairs.src):
                y, x = divmod(int(src), 12)
                assert aff[b, d, s].item() == pytest.approx(naive_affinity(feats[b], (y, x), (y + dy, x + dx)),
                                                            rel=1e-5)


@pytest.mark.parametrize("window", [False, True])
def test_grid_affinities_match_a_naive_loop(window):
    torch.manual_seed(1)
    feats = torch.randn(1, 4, 7, 11)
    aff, offsets = grid_feature_affinities(feats, 5, source_window=window)
    assert offsets == search_offsets(5) and aff.shape == (1, 34, 7, 11)
    for i, (dy, dx) in enumerate(offsets):
        for y in range(7):
            for x in range(11):
                inside = y + dy < 7 and 0 <= x + dx < 11
                in_window = y < 7 - 4 and 4 <= x < 11 - 4
                want = naive_affinity(feats[0], (y, x), (y + dy, x + dx)) if inside and (in_window or not window) else 0
                assert aff[0, i, y, x].item() == pytest.approx(want, rel=1e-5, abs=1e-12)


# A 3 x 4 label grid (radius 2: offsets (0, 1), (1, -1), (1, 0), (1, 1); sources (0..1, 1..2)).
GRID = np.array([[0, 0, 1, 1],
                 [0, 255, 1, 2],
                 [0, 0, 2, 2]], np.uint8)
# (source, neighbour) -> kind, worked out by hand from GRID
EXPECTED = {((0, 1), (0, 2)): "neg", ((0, 1), (1, 0)): "bg", ((0, 1), (1, 1)): "ignored", ((0, 1), (1, 2)): "neg",
            ((0, 2), (0, 3)): "fg", ((0, 2), (1, 1)): "ignored", ((0, 2), (1, 2)): "fg", ((0, 2), (1, 3)): "neg",
            ((1, 1), (1, 2)): "ignored", ((1, 1), (2, 0)): "ignored", ((1, 1), (2, 1)): "ignored",
            ((1, 1), (2, 2)): "ignored",
            ((1, 2), (1, 3)): "neg", ((1, 2), (2, 1)): "neg", ((1, 2), (2, 2)): "neg", ((1, 2), (2, 3)): "neg"}


def hand_labels():
    mask = torch.from_numpy(np.kron(GRID, np.ones((8, 8), np.uint8)))[None]  # the map at image size
    labels = labels_at_grid(mask, 8)
    assert torch.equal(labels[0], torch.from_numpy(GRID))
    pairs = PairIndex(2, (3, 4))
    return pairs, pairs.pair_labels(labels)


def test_pair_labels_of_a_hand_made_map():
    pairs, (bg, fg, neg) = hand_labels()
    seen = {}
    for d, (dy, dx) in enumerate(pairs.offsets):
        for s, src in enumerate(pairs.src):
            y, x = divmod(int(src), 4)
            kinds = [k for k, t in (("bg", bg), ("fg", fg), ("neg", neg)) if t[0, d, s] == 1]
            seen[((y, x), (y + int(dy), x + int(dx)))] = kinds[0] if kinds else "ignored"
    assert seen == EXPECTED
    assert (bg + fg + neg).max() == 1  # each pair has at most one kind


def test_loss_of_a_hand_made_map_and_its_gradient_signs():
    pairs, (bg, fg, neg) = hand_labels()
    torch.manual_seed(2)
    aff = (torch.rand(1, 4, 4) * 0.8 + 0.1).requires_grad_(True)
    task_loss = PsaAffinityTask.loss(aff, bg, fg, neg)
    e = 1e-5
    a = aff.detach()
    want_bg = -torch.log(a[bg == 1] + e).sum() / (1 + e)
    want_fg = -torch.log(a[fg == 1] + e).sum() / (2 + e)
    want_neg = -torch.log(1 + e - a[neg == 1]).sum() / (7 + e)  # 7 negative pairs in EXPECTED
    assert task_loss["loss"].item() == pytest.approx((want_bg / 4 + want_fg / 4 + want_neg / 2).item(), rel=1e-6)
    task_loss["loss"].backward()
    g = aff.grad
    assert (g[(bg + fg) == 1] < 0).all()  # raising a positive pair's affinity lowers the loss
    assert (g[neg == 1] > 0).all()  # raising a negative pair's affinity raises it
    assert (g[(bg + fg + neg) == 0] == 0).all()  # ignored pairs get no gradient


def test_head_names_shapes_init_and_trainable_parts():
    net = tiny_net()
    c = net.backbone.channels
    assert net.taps == ("c3", "c4", "c5") and net.stride == 8
    assert {k: tuple(v.shape) for k, v in net.state_dict().items() if not k.startswith("backbone.")} == {
        "f8_3.weight": (64, c["c3"], 1, 1), "f8_4.weight": (128, c["c4"], 1, 1),
        "f8_5.weight": (256, c["c5"], 1, 1), "f9.weight": (448, 448, 1, 1)}
    bound = 4 * math.sqrt(6 / (448 + 448))  # xavier_uniform, gain 4
    assert net.f9.weight.abs().max() <= bound and net.f9.weight.abs().max() > 0.9 * bound
    std = net.f8_5.weight.std().item()  # kaiming_normal, fan_in = c5
    assert std == pytest.approx(math.sqrt(2 / c["c5"]), rel=0.1)
    assert not any(p.requires_grad for n, p in net.backbone.named_parameters() if n.startswith(("conv1", "bn1")))
    assert not any(p.requires_grad for n, p in net.backbone.named_parameters() if ".bn" in n)  # frozen_affine
    task = PsaAffinityTask(TINY)
    groups = task.param_groups()["main"]
    assert {g["name"]: g["lr_mult"] for g in groups} == {"backbone.weight": 1.0, "new.weight": 10.0}
    listed = [p for g in groups for p in g["params"]]
    assert len(listed) == len({id(p) for p in listed}) == sum(p.requires_grad for p in task.parameters())


def test_resnet38d_taps_are_psa_conv4_conv5_conv6():
    with torch.device("meta"):
        net = build_psa_net({"model": {"backbone": "resnet38d", "output_stride": 8}})
    assert net.taps == ("b5_pre", "b6_pre", "c5") and net.stride == 8
    assert [net.f8_3.in_channels, net.f8_4.in_channels, net.f8_5.in_channels] == [512, 1024, 4096]


def test_coarser_taps_are_resized_to_the_finest_grid():
    cfg = {"model": {**TINY["model"], "output_stride": 16}}
    torch.manual_seed(0)
    net = build_psa_net(cfg).eval()
    assert net.stride == 8
    assert net(torch.randn(1, 3, 64, 80)).shape == (1, 448, 8, 10)


def test_training_step_trains_backbone_and_head():
    task = PsaAffinityTask(TINY)
    task.train()
    mask = torch.zeros(2, 96, 96, dtype=torch.uint8)
    mask[:, 24:72, 24:72] = 1
    mask[1, :, :12] = 255
    out = task.training_step({"image": torch.randn(2, 3, 96, 96), "mask": mask}, StepContext())
    assert torch.isfinite(out["loss"]) and out["bg_pos"] > 0 and out["fg_pos"] > 0 and out["neg"] > 0
    out["loss"].backward()
    assert task.net.f9.weight.grad is not None and task.net.backbone.layer4[1].conv2.weight.grad is not None
    with pytest.raises(ConfigError, match="divisible by 8"):
        task.training_step({"image": torch.randn(1, 3, 92, 92), "mask": mask[:1, :92, :92]}, StepContext())


# --- the walk against psa's dense formula --------------------------------------------------------

def psa_pair_list(h, w, radius, window):
    """psa's get_indices_of_pairs, written out: (from, to) flat indices; with ``window`` only the
    sources of its cropped window, else every in-grid pair within the radius."""
    out = []
    for y in range(h):
        for x in range(w):
            if window and not (y < h - radius + 1 and radius - 1 <= x < w - radius + 1):
                continue
            for dy in range(radius):
                for dx in range(-radius + 1, radius):
                    if (dy == 0 and dx <= 0) or dy * dy + dx * dx >= radius * radius:
                        continue
                    if y + dy < h and 0 <= x + dx < w:
                        out.append((y * w + x, (y + dy) * w + x + dx))
    return out


def dense_psa_walk(net, image, hr_cam, alpha, beta, logt, radius=5, window=False):
    """psa infer_aff.py as a formula: pad to /8, dense A (unit diagonal), A^beta, column-normalise,
    T^(2^logt), pooled [(1 - max)^alpha, cams] multiplied from the left, bilinear x8, crop."""
    _, h, w = image.shape
    ph, pw = -(-h // 8) * 8, -(-w // 8) * 8
    with torch.no_grad():
        f = net(F.pad(image, (0, pw - w, 0, ph - h))[None])[0].double()
    gh, gw = f.shape[1:]
    a = torch.eye(gh * gw, dtype=torch.float64)
    flat = f.reshape(f.shape[0], -1)
    for i, j in psa_pair_list(gh, gw, radius, window):
        a[i, j] = a[j, i] = torch.exp(-(flat[:, i] - flat[:, j]).abs().mean())
    t = a.pow(beta)
    t = t / t.sum(0, keepdim=True)
    for _ in range(logt):
        t = t @ t
    cam = torch.cat([(1 - hr_cam.amax(0, keepdim=True)).pow(alpha), hr_cam]).double()
    cam = F.avg_pool2d(F.pad(cam, (0, pw - w, 0, ph - h))[None], 8, 8)[0]
    rw = (cam.reshape(cam.shape[0], -1) @ t).reshape(-1, gh, gw)
    up = F.interpolate(rw[None], size=(ph, pw), mode="bilinear", align_corners=False)[0, :, :h, :w]
    return rw, up


@pytest.mark.parametrize("preset,window", [("psa", False), ("icam", False), ("aeft", True)])
def test_walk_equals_psa_dense_formula(preset, window):
    net = tiny_net(3).eval()
    torch.manual_seed(4)
    images = [torch.randn(3, 44, 60), torch.randn(3, 40, 52)]  # padded to 48 x 64 / 40 x 56
    infer = {**RW_PRESETS.get(preset), "source_window": window, "dtype": "float64"}
    items = []
    for im in images:
        hr = torch.rand(2, *im.shape[1:])
        hr = hr / hr.amax((1, 2), keepdim=True)
        cam = {"keys": np.array([0, 3]), "hr_cam": hr.numpy()}
        items.append({"image": im, "cams": PsaAffinityTask.walk_cams(cam, im.shape[1:], infer, stride=8),
                      "hr": hr})
    out = PsaAffinityTask.walk(net, items, infer, "cpu")
    for it, (scores, four) in zip(items, out):
        want_rw, want_up = dense_psa_walk(net, it["image"], it["hr"], infer["bg_alpha"], infer["beta"],
                                          infer["logt"], window=window)
        h, w = it["image"].shape[1:]
        assert scores.shape == (3, h, w)
        want = (want_up / want_up.max()).numpy()  # upsample_walk divides by the max
        assert np.abs(scores - want).max() <= 1e-4 * np.abs(want).max()
        assert np.array_equal(scores.argmax(0), want.argmax(0))
        # the stride-4 map of the CAM files: the grid walk x2, cropped to ceil(h / 4) x ceil(w / 4)
        want4 = F.interpolate(want_rw[None], scale_factor=2, mode="bilinear", align_corners=False)[0]
        want4 = want4[:, :(h + 3) // 4, :(w + 3) // 4]
        want4 = (want4 / want4.max()).numpy()
        assert four.shape == want4.shape and np.abs(four - want4).max() <= 1e-4


def test_walk_cams_needs_image_size_cams():
    infer = RW_PRESETS.get("psa")
    hr = np.random.default_rng(0).random((1, 20, 28)).astype(np.float32)
    x = PsaAffinityTask.walk_cams({"keys": np.array([2]), "hr_cam": hr}, (20, 28), infer, stride=8)
    assert x.shape == (2, 3, 4)  # background + one class on the ceil(20 / 8) x ceil(28 / 8) grid
    bg = np.pad((1 - hr[0]) ** 16, ((0, 4), (0, 4)))  # pooled after the power, zero padding included
    assert x[0, 2, 3].item() == pytest.approx(bg[16:24, 24:32].mean(), rel=1e-5)
    with pytest.raises(DataError, match="hr_cam"):
        PsaAffinityTask.walk_cams({"keys": np.array([2]), "cam": hr[:, ::4, ::4]}, (20, 28), infer, stride=8)
    with pytest.raises(DataError, match="image is"):
        PsaAffinityTask.walk_cams({"keys": np.array([2]), "hr_cam": hr}, (20, 30), infer, stride=8)


def test_walk_cams_walk_a_stored_background():
    """CAM files with the method's own background (cam_bg / hr_cam_bg) walk it in front of the
    classes instead of (1 - max)^alpha: psa pools the image-size one, IRN takes the stride-4 one."""
    rng = np.random.default_rng(1)
    hr = rng.random((2, 20, 28)).astype(np.float32)
    hr_bg = rng.random((20, 28)).astype(np.float32)
    cam = {"keys": np.array([0, 3]), "hr_cam": hr, "hr_cam_bg": hr_bg, "cam": hr[:, ::4, ::4], "cam_bg": hr_bg[::4, ::4]}
    x = PsaAffinityTask.walk_cams(cam, (20, 28), RW_PRESETS.get("psa"), stride=8)
    assert x.shape == (3, 3, 4)
    want = np.pad(hr_bg, ((0, 4), (0, 4)))[8:16, 16:24].mean()  # the stored map pooled, no power
    assert x[0, 1, 2].item() == pytest.approx(want, rel=1e-5)
    assert torch.allclose(x[1:], PsaAffinityTask.walk_cams({"keys": cam["keys"], "hr_cam": hr}, (20, 28), {}, stride=8))
    irn = AffinityTask.walk_cams(cam, (20, 28), {"bg_alpha": 16})
    assert irn.shape == (3, 5, 7) and torch.equal(irn[0], torch.from_numpy(hr_bg[::4, ::4]))
    assert torch.equal(irn[1:], torch.from_numpy(hr[:, ::4, ::4]))
    with pytest.raises(DataError, match="hr_cam_bg"):
        PsaAffinityTask.walk_cams({k: v for k, v in cam.items() if k != "hr_cam_bg"}, (20, 28), {}, stride=8)


def test_source_window_changes_only_border_pairs():
    torch.manual_seed(5)
    feats = torch.randn(1, 3, 10, 12)
    full, _ = grid_feature_affinities(feats, 5)
    win, _ = grid_feature_affinities(feats, 5, source_window=True)
    assert torch.equal(full[..., :6, 4:8], win[..., :6, 4:8])
    assert (win[..., :, :4] == 0).all() and (win[..., 6:, :] == 0).all() and full[..., 6:, :].abs().sum() > 0


# --- checkpoints --------------------------------------------------------------------------------

def psa_resnet38_aff_shapes():
    """The keys and shapes of psa's res38_aff.pth, written out from network/resnet38d.py +
    network/resnet38_aff.py (BatchNorm without num_batches_tracked, as PyTorch 0.4 saved it)."""
    shapes = {"conv1a.weight": (64, 3, 3, 3)}

    def bn(name, c):
        for s in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{s}"] = (c,)

    basic = [("b2", 64, 128, 128), ("b2_1", 128, 128, 128), ("b2_2", 128, 128, 128),
             ("b3", 128, 256, 256), ("b3_1", 256, 256, 256), ("b3_2", 256, 256, 256), ("b4", 256, 512, 512)]
    basic += [(f"b4_{i}", 512, 512, 512) for i in range(1, 6)]
    basic += [("b5", 512, 512, 1024), ("b5_1", 1024, 512, 1024), ("b5_2", 1024, 512, 1024)]
    for name, cin, mid, cout in basic:
        bn(f"{name}.bn_branch2a", cin)
        shapes[f"{name}.conv_branch2a.weight"] = (mid, cin, 3, 3)
        bn(f"{name}.bn_branch2b1", mid)
        shapes[f"{name}.conv_branch2b1.weight"] = (cout, mid, 3, 3)
        if cin != cout or name in ("b2", "b3", "b4"):
            shapes[f"{name}.conv_branch1.weight"] = (cout, cin, 1, 1)
    for name, cin, cout in (("b6", 1024, 2048), ("b7", 2048, 4096)):
        bn(f"{name}.bn_branch2a", cin)
        shapes[f"{name}.conv_branch2a.weight"] = (cout // 4, cin, 1, 1)
        bn(f"{name}.bn_branch2b1", cout // 4)
        shapes[f"{name}.conv_branch2b1.weight"] = (cout // 2, cout // 4, 3, 3)
        bn(f"{name}.bn_branch2b2", cout // 2)
        shapes[f"{name}.conv_branch2b2.weight"] = (cout, cout // 2, 1, 1)
        shapes[f"{name}.conv_branch1.weight"] = (cout, cin, 1, 1)
    bn("bn7", 4096)
    shapes.update({"f8_3.weight": (64, 512, 1, 1), "f8_4.weight": (128, 1024, 1, 1),
                   "f8_5.weight": (256, 4096, 1, 1), "f9.weight": (448, 448, 1, 1)})
    return shapes


@pytest.mark.filterwarnings("ignore:for backbone")  # meta tensors: keys and shapes only
def test_psa_res38_aff_checkpoint_loads_strictly():
    """psa's res38_aff.pth layout through the hub's converter into the task of its registry entry
    (configs/voc/affinity_psa.yaml): every key placed, shapes checked, nothing left over."""
    from wsss import hub
    from wsss.hub.convert import CONVERTERS, build_task, convert_state, experiment_config, fit_to

    art = hub.get("psa/voc/res38-aff")
    conv = CONVERTERS.get(art.converter)
    task = build_task(conv.task, experiment_config(art), art.classes, meta=True)
    assert isinstance(task, PsaAffinityTask)
    with torch.device("meta"):
        state = {k: torch.empty(s) for k, s in psa_resnet38_aff_shapes().items()}
    mapped = fit_to(task, convert_state(conv, {f"module.{k}": v for k, v in state.items()}, "resnet38d")[0])
    assert "net.f9.weight" in mapped and "net.backbone.b7.conv_branch1.weight" in mapped
    task.load_state_dict(mapped, strict=True, assign=True)
    broken = dict(state)
    broken["f8_5.weight"] = torch.empty(256, 2048, 1, 1, device="meta")
    with pytest.raises(CheckpointError, match="f8_5.weight"):
        fit_to(task, convert_state(conv, broken, "resnet38d")[0])
    del broken["f8_5.weight"]
    with pytest.raises(CheckpointError, match="missing"):
        fit_to(task, convert_state(conv, broken, "resnet38d")[0])


def test_init_from_a_converted_cam_classifier(tmp_path):
    """AEFT's AffinityNet starts from psa's res38_cls.pth, converted by the hub into a CAM
    experiment (trunk under ``net.backbone.``, fc8 as ``net.head``): the trunk loads, fc8 does not."""
    from wsss.engine import save_checkpoint

    donor = tiny_net(5).backbone
    state = {f"net.backbone.{k}": v for k, v in donor.state_dict().items()} | {"net.head.weight": torch.randn(20, 256, 1, 1)}
    save_checkpoint(tmp_path / "cls" / "checkpoints" / "last.pth", {"state_dict": state, "config": {}})
    cfg = {"model": {**TINY["model"], "backbone_init": str(tmp_path / "cls"), "backbone_init_prefix": "net.backbone."}}
    net = build_psa_net(cfg)
    for k, v in donor.state_dict().items():
        assert torch.equal(net.backbone.state_dict()[k], v)
    fresh = tiny_net(6).backbone.state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in donor.state_dict().items() if v.is_floating_point())


# --- recipes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["voc", "coco"])
def test_psa_lineage_recipes(dataset):
    from wsss.config import load_config
    from wsss.data.transforms import ColorJitter, build_train_transform

    want = {"psa": (0.1, 4, 32, "psa"), "icam": (0.01, 2, 4, "icam"), "aeft": (0.01, 2, 21, "aeft")}
    for name, (lr, low, high, preset) in want.items():
        cfg = load_config(f"configs/{dataset}/affinity_{name}.yaml")
        t, a, lab = cfg["train"], cfg["augment"], cfg["method"]["labels"]
        assert (t["epochs"], t["batch_size"], t["lr"], t["weight_decay"], t["momentum"]) == (8, 8, lr, 5e-4, 0.9)
        assert (a["crop"], a["hflip"], "resize_long" in a) == (448, True, False)
        jitter = [s for s in build_train_transform(a).transforms if isinstance(s, ColorJitter)][0]
        assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == pytest.approx((0.3, 0.3, 0.3, 0.1))
        assert (lab["rule"], lab["low_alpha"], lab["high_alpha"]) == ("alpha", low, high)
        assert cfg["method"]["labels_fallback"] == lab and cfg["method"]["radius"] == 5
        assert cfg["infer"]["preset"] == preset and cfg["method"]["name"] == "psa"
        assert "affinity" not in cfg["model"]
        assert cfg["data"]["dataset"] == dataset
    aeft = load_config(f"configs/{dataset}/affinity_aeft.yaml")["model"]
    assert aeft["backbone_init"].endswith("hub/psa/voc/res38-cls") and not aeft["weights"]
    assert aeft["backbone_init_prefix"] == "net.backbone."
    with torch.device("meta"):
        net = build_psa_net(load_config(f"configs/{dataset}/affinity_psa.yaml"), load_backbone=False)
    frozen = {n.split(".")[0] for n, p in net.backbone.named_parameters() if not p.requires_grad and "bn" not in n}
    assert frozen == {"conv1a", "b2", "b2_1", "b2_2"}  # psa's not_training (BN affine: frozen_affine)
