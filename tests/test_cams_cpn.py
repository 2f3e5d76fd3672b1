"""CPN (wsss/cams/cpn.py): loss terms on hand-computed cases, gradient isolation of the refined
branch, the triplet, and CPN's inference."""

import numpy as np
import pytest
import torch

from wsss.backbones import build_backbone
from wsss.cams import build_method
from wsss.cams.cpn import (CPNNet, argmax_cam, cpn_losses, keep_channel_max, max_norm, min_pool_loss, ohem_mean,
                           with_background)
from wsss.cams.inference import image_pyramid
from wsss.engine import StepContext
from wsss.errors import ConfigError

NUM_CLASSES = 3


def tiny_cfg(**method):
    return {"model": {"backbone": "resnet18", "output_stride": 16, "norm_mode": "train", "weights": None,
                      "backbone_kwargs": {"width": 8}},
            "method": {"name": "cpn", "tap_widths": [4, 8], "embed": 8, **method}}


def test_min_pooling_keeps_the_bottom_quarter():
    # 2 channels, 4 x 4: the channel max is arange(16) - 2 (channel 0 lower everywhere)
    top = torch.arange(16.0).reshape(1, 1, 4, 4) - 2
    x = torch.cat([top - 1, top], dim=1)[:, torch.tensor([1, 0])]
    # bottom 16 // 4 = 4 values: -2, -1, 0, 1 -> relu -> 0, 0, 0, 1 -> sum 1 / (4 * 1)
    assert min_pool_loss(x).item() == pytest.approx(0.25)
    # two images: the second's maximum is 10 everywhere -> 10 per kept value
    both = torch.cat([x, torch.full_like(x, 10.0)])
    assert min_pool_loss(both).item() == pytest.approx((1 + 40) / 8)


def test_ohem_keeps_the_top_20_percent_of_each_image():
    g = torch.Generator().manual_seed(0)
    first = torch.arange(210.0)[torch.randperm(210, generator=g)].reshape(21, 2, 5)
    second = 2 * torch.arange(210.0)[torch.randperm(210, generator=g)].reshape(21, 2, 5)
    x = torch.stack([first, second])
    # k = int(0.2 * 210) = 42 per image: 168..209 (mean 188.5) and 2 * that (377)
    assert ohem_mean(x).item() == pytest.approx((188.5 + 377.0) / 2)
    assert ohem_mean(x, ratio=1.0).item() == pytest.approx((104.5 + 209.0) / 2)


def test_channel_max_keeps_its_value_not_a_one_hot():
    x = torch.tensor([[0.2, 0.5], [0.7, 0.5], [0.1, -1.0]]).reshape(1, 3, 1, 2)
    kept = keep_channel_max(x)[0, :, 0]
    torch.testing.assert_close(kept, torch.tensor([[0.0, 0.5], [0.7, 0.5], [0.0, 0.0]]))  # ties keep both
    bg = with_background(x)
    torch.testing.assert_close(bg[0, :, 0], torch.tensor([[0.3, 0.5], [0.7, 0.5], [0.1, -1.0]]))


def test_argmax_cam_is_max_normalised_argmax_only_with_one_minus_max_background():
    cam = torch.tensor([[5.0, 0.0], [2.0, 4.0], [1.0, -3.0]]).reshape(1, 3, 1, 2)  # bg, c1, c2
    a = argmax_cam(cam)
    # c1 / 4 = [0.5, 1], c2 / 1 = [1, 0]; pixel 0: c2 wins (1 > 0.5); pixel 1: c1 (1 > 0)
    torch.testing.assert_close(a[0, :, 0], torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), atol=1e-4, rtol=0)
    assert not a.requires_grad


def triplet_maps(a0, a1, a2):
    """(cam, refined) pairs with refined = cam, for 1 class, (1, 2, 1, 2) maps."""
    mk = [torch.tensor([[0.0, 0.0], v]).reshape(1, 2, 1, 2).requires_grad_() for v in (a0, a1, a2)]
    return [(m, m) for m in mk], mk


@pytest.mark.parametrize("rho,expected", [(0.25, 0.75), (0.8, 0.2)])
def test_cp_loss_weights_the_pair_by_its_visible_areas(rho, expected):
    # max-normalised: A0 -> [0, 1], A1 -> [0, 1] * rho1, A2 -> [1, 0] * rho2
    # |rho2 * [1, 0] + rho1 * [0, 1] - [0, 1]| = [rho2, rho2] -> mean rho2
    maps, _ = triplet_maps([0.0, 2.0], [0.0, 4.0], [3.0, 1.0])
    labels = torch.ones(1, 1)
    t = cpn_losses(maps, labels, labels, torch.tensor([rho]))
    assert t["tcp"].item() == pytest.approx(expected, abs=1e-4)
    assert t["tcp_refined"].item() == pytest.approx(expected, abs=1e-4)   # |R0 - R1 - R2|, same maps
    # without the weights the pair would sum to [1, 1]: mean |.| = 0.5 whatever rho
    unweighted = cpn_losses(maps, labels, labels, torch.tensor([1.0]))["tcp"].item()
    assert unweighted != pytest.approx(expected, abs=1e-3)


def test_stop_gradient_only_on_the_pair_cams_of_the_first_cp_term():
    maps, (m0, m1, m2) = triplet_maps([0.0, 2.0], [0.0, 4.0], [3.0, 1.0])
    cams = [(a.clone(), r.clone()) for a, r in maps]
    labels = torch.ones(1, 1)
    t = cpn_losses(cams, labels, labels, torch.tensor([0.25]))
    g = torch.autograd.grad(t["tcp"], [c for c, _ in cams], allow_unused=True)
    assert g[0] is not None and g[0].abs().sum() > 0
    assert all(x is None or x.abs().sum() == 0 for x in g[1:])          # A1, A2 detached
    g = torch.autograd.grad(t["tcp_refined"], [r for _, r in cams])
    assert all(x.abs().sum() > 0 for x in g)                             # R0, R1, R2 all trained


def test_labels_mask_absent_classes_out_of_the_cp_loss():
    g = torch.Generator().manual_seed(1)
    maps = [(torch.rand(2, 4, 6, 6, generator=g), torch.rand(2, 4, 6, 6, generator=g)) for _ in range(3)]
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    base = cpn_losses(maps, labels, labels, torch.tensor([0.4, 0.6]))
    changed = [(a.clone(), r.clone()) for a, r in maps]
    changed[0][0][0, 2] += 5.0   # image 0, class 2 (absent) of A0
    changed[1][1][1, 1] += 5.0   # image 1, class 1 (absent) of R1
    after = cpn_losses(changed, labels, labels, torch.tensor([0.4, 0.6]))
    for key in ("tcp", "tcp_refined", "cpcr", "minpool"):
        assert after[key].item() == pytest.approx(base[key].item(), abs=1e-6), key


def test_losses_on_the_refined_map_never_reach_the_backbone_or_fc8():
    torch.manual_seed(0)
    net = CPNNet(build_backbone("resnet18", width=8), NUM_CLASSES, tap_widths=(4, 8), embed=8)
    assert net.taps == ("c3", "c4")
    cam, refined = net(torch.randn(2, 3, 64, 64))
    assert cam.shape == refined.shape == (2, NUM_CLASSES + 1, 4, 4) and (refined >= 0).all()
    refined.sum().backward()
    heads = ("side.f8_3.", "side.f8_4.", "pcm.f9.", "f10.")  # the reference's f8_3, f8_4, f9, f10
    for name, p in net.named_parameters():
        reached = p.grad is not None and p.grad.abs().sum() > 0
        assert reached == name.startswith(heads), name
    net.zero_grad(set_to_none=True)
    cam, _ = net(torch.randn(2, 3, 64, 64))
    cam.sum().backward()
    assert all(p.grad is None for n, p in net.named_parameters() if n.startswith(heads))


def test_the_triplet_is_the_image_and_its_two_halves():
    task = build_method("cpn", tiny_cfg(), NUM_CLASSES)
    seen = []
    real = task.net.forward
    task.net.forward = lambda x: (seen.append(x.clone()), real(x))[1]
    images = torch.randn(2, 3, 64, 64)
    keep = (torch.rand(2, 64, 64) > 0.5).float()
    batch = {"image": images, "label": torch.tensor([[1.0, 0, 0], [0, 1, 1]]), "maps": {"cp_keep": keep},
             "cp_rho": keep.mean(dim=(1, 2))}
    out = task.training_step(batch, StepContext())
    assert torch.isfinite(out["loss"])
    assert len(seen) == 3
    torch.testing.assert_close(seen[0], images)
    torch.testing.assert_close(seen[1], images * keep[:, None])
    torch.testing.assert_close(seen[2], images * (1 - keep[:, None]))
    with pytest.raises(ConfigError, match="complementary pair"):
        task.training_step({"image": images, "label": batch["label"], "maps": {}}, StepContext())


def test_inference_sums_the_refined_maps_then_min_max_and_halves():
    task = build_method("cpn", tiny_cfg(), NUM_CLASSES).eval()
    summed = torch.tensor([[[-1.0, 1.0], [3.0, 5.0]]])
    expected = torch.tensor([[[0.0, 1.0], [3.0, 5.0]]]).sub(1e-5).clamp(min=0) / (5 + 1e-5)
    torch.testing.assert_close(task.combine(summed), expected / 2)
    full = build_method("cpn", tiny_cfg(infer_halve=False), NUM_CLASSES)
    torch.testing.assert_close(full.combine(summed), expected)
    assert task.combine(torch.zeros(0, 2, 2)).shape == (0, 2, 2)
    # the saved maps are the refined foreground maps of every view, summed
    image = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    views = image_pyramid(image, (1.0,))
    with torch.inference_mode():
        [maps] = task.infer_cams(views, image.shape[:2], [np.array([0, 2])], hr_stride=1)
        x = views[0][None]
        both = task.view_maps(x, None) + task.view_maps(x.flip(-1), None).flip(-1)
        up = torch.nn.functional.interpolate(both[:, [0, 2]], (40, 48), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(maps["hr_cam"], task.combine(up))
    assert maps["hr_cam"].max() <= 0.5 and not task.background
    diag = build_method("cpn", tiny_cfg(infer_map="cam"), NUM_CLASSES).eval()
    diag.load_state_dict(task.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(diag.view_maps(x, None), torch.nn.functional.interpolate(
            torch.relu(task.net(x)[0][:, 1:]), (40, 48), mode="bilinear", align_corners=True))


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="key_layout"):
        build_method("cpn", tiny_cfg(key_layout="rows"), NUM_CLASSES)
    with pytest.raises(ConfigError, match="hide_draw"):
        build_method("cpn", tiny_cfg(hide_draw="third"), NUM_CLASSES)
    with pytest.raises(ConfigError, match="infer_map"):
        build_method("cpn", tiny_cfg(infer_map="both"), NUM_CLASSES)
    with pytest.raises(ConfigError, match="taps"):
        build_method("cpn", tiny_cfg(taps=["c3"]), NUM_CLASSES)


@pytest.mark.slow
def test_runners_take_method_cpn(tmp_path):
    """runners/1-priors.sh METHOD=cpn (CPN's own sweep scored next to the toolkit's), then the
    random-walk stage on its CAMs (runners/3-rw.sh), on a tiny synthetic set."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from wsss.data.synthetic import generate

    root = Path(__file__).resolve().parents[1]
    generate(tmp_path / "data", seed=0, n_train=24, n_val=6, size=64, workers=1, progress=False)
    env = dict(os.environ, WSSS_VENV=sys.prefix, DATASET="synthetic", DATA_ROOT=str(tmp_path / "data"),
               EXP_ROOT=str(tmp_path / "exp"), METHOD="cpn", PYTHONPATH=str(root),
               OVERRIDES="train.epochs=1 train.batch_size=8 train.num_workers=0 infer.num_workers=0 infer.scales=[1.0]")
    for runner in ("1-priors.sh", "3-rw.sh"):
        r = subprocess.run(["bash", f"runners/{runner}"], cwd=root, env=env, capture_output=True, text=True,
                           timeout=1200)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    exp = tmp_path / "exp" / "synthetic_cpn"
    toolkit = json.loads((exp / "eval_cam_val.json").read_text())
    own = json.loads((exp / "eval_cam_val_method.json").read_text())
    assert [c["threshold"] for c in toolkit["curve"]][:2] == [0.05, 0.1]
    assert [c["threshold"] for c in own["curve"]][:2] == [0.2, 0.21] and len(own["curve"]) == 40
    assert len(list((tmp_path / "exp" / "synthetic_rw" / "pseudo" / "train").glob("*.png"))) == 24


def test_voc_recipe_freezes_psa_stem_and_batchnorm():
    """configs/voc/cpn.yaml: ResNet-38d with conv1a, b2, b2_1, b2_2 and every BN affine frozen
    (CPN's not_training and psa's Net.train()); the five new layers at x10 (built on meta)."""
    from wsss.config import load_config

    cfg = load_config("configs/voc/cpn.yaml")
    cfg["model"]["weights"] = None
    with torch.device("meta"):
        task = build_method("cpn", cfg, 20)
    for name, p in task.net.backbone.named_parameters():
        stem = name.split(".")[0] in ("conv1a", "b2", "b2_1", "b2_2")
        assert p.requires_grad == (not stem and "bn" not in name), name
    groups = {g["name"]: g for g in task.param_groups()["main"]}
    assert {id(p) for p in groups["new.weight"]["params"]} == \
        {id(p) for m in task.net.new_layers for p in m.parameters()}
    assert groups["new.weight"]["lr_mult"] == 10.0 and task.net.taps == ("b5_pre", "b6_pre")
    assert task.net.fc8.weight.shape == (21, 4096, 1, 1) and task.net.pcm.f9.weight.shape == (192, 195, 1, 1)
