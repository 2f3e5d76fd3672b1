"""SP-CAM: the saliency-guided loss, the DRM, parameter groups, the frozen superpixel network and
the method-owned inference."""

import math

import numpy as np
import pytest
import torch

from wsss.cams import build_method
from wsss.cams.drm import DRM
from wsss.cams.losses import saliency_guided_loss
from wsss.cams.spcam import SPCAM
from wsss.config import save_config
from wsss.engine import StepContext, save_checkpoint
from wsss.errors import CheckpointError, ConfigError
from wsss.superpixel.net import SpixelNet
from wsss.superpixel.ops import OFFSETS9, scatter_cells


def tiny_cfg(**method_kw):
    return {
        "model": {"backbone": "resnet18", "output_stride": 16, "weights": None, "backbone_kwargs": {"width": 8}},
        "method": {"name": "spcam", "drm_widths": [16, 8, 8], "q_width": 4, "walk_steps": 2, **method_kw},
        "train": {"epochs": 1, "batch_size": 2, "lr": 0.01, "num_workers": 0, "channels_last": False},
    }


def superpixel_experiment(path, net=None, epochs=1):
    net = net or SpixelNet()
    cfg = {"method": {"name": "psam"}, "model": {"weights": None}, "train": {"epochs": epochs}}
    save_config(cfg, path / "config.yaml")
    save_checkpoint(path / "checkpoints" / "last.pth", {"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                                                         "config": cfg, "epoch": 1})
    return path


# ------------------------------------------------------------------------------ the loss
def test_saliency_guided_loss_by_hand():
    """Two cells, classes 0 and 1 present. p(cell 0) = [.1, .8, .1], p(cell 1) = [.7, .1, .2];
    saliency [1, 0]. Class 0: round(p) = [1, 0], IoU = 1 / (1 + 2e-4) > 0.4: salient. Class 1:
    round(p) = [0, 0], IoU 0: not salient. fg = [.8, .1], bg = p0 + p2 = [.2, .9];
    prediction .5 fg + .5 (1 - bg) = [.8, .1]; MSE = (.2^2 + .1^2) / 2 = .025."""
    p = torch.tensor([[0.1, 0.7], [0.8, 0.1], [0.1, 0.2]])  # (3 channels, 2 cells)
    logits = p.log()[None, :, None, :]
    saliency = torch.tensor([[[[1.0, 0.0]]]])
    labels = torch.tensor([[1.0, 1.0]])
    assert saliency_guided_loss(logits, saliency, labels, tau=0.4).item() == pytest.approx(0.025, rel=1e-5)
    # tau above class 0's IoU: no salient class, the prediction is .5 (1 - (p0 + p1 + p2)) = 0
    assert saliency_guided_loss(logits, saliency, labels, tau=0.9999).item() == pytest.approx(0.5, rel=1e-5)
    # an absent class counts in neither sum: without class 1, bg = p0 = [.1, .7]
    expect = ((0.5 * 0.8 + 0.5 * 0.9 - 1) ** 2 + (0.5 * 0.1 + 0.5 * 0.3) ** 2) / 2
    got = saliency_guided_loss(logits, saliency, torch.tensor([[1.0, 0.0]]), tau=0.4).item()
    assert got == pytest.approx(expect, rel=1e-5)


def test_saliency_loss_gradient_skips_the_iou():
    """p is detached in the IoU only: the loss is differentiable through fg and bg."""
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    loss = saliency_guided_loss(logits, torch.rand(2, 1, 3, 3), torch.tensor([[1.0, 0, 1], [0, 1, 0]]))
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------ DRM
def test_drm_reconstruction_uses_background_and_shared_foreground_weights():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, 5, generator=g)
    w_bg = torch.randn(2, 9, 3, 5, generator=g).softmax(1)
    w_fg = torch.randn(2, 9, 3, 5, generator=g).softmax(1)
    out = DRM.reconstruct(logits, w_bg, w_fg)
    torch.testing.assert_close(out[:, :1], scatter_cells(logits[:, :1], w_bg))
    for c in range(1, 4):
        torch.testing.assert_close(out[:, c:c + 1], scatter_cells(logits[:, c:c + 1], w_fg))
    # centre-only weights reconstruct the logits themselves
    centre = torch.zeros(2, 9, 3, 5)
    centre[:, 4] = 1
    torch.testing.assert_close(DRM.reconstruct(logits, centre, centre), logits)
    # a weight k sends the source cell's logit to the cell n - o_k
    k = 2  # TR: (dy, dx) = (-1, +1) -> sent one row down, one column left
    assert OFFSETS9[k] == (-1, 1)
    only = torch.zeros(1, 9, 3, 5)
    only[:, k] = 1
    z = torch.zeros(1, 1, 3, 5)
    z[0, 0, 0, 3] = 1.0
    assert scatter_cells(z, only)[0, 0].nonzero().tolist() == [[1, 2]]


def test_drm_shapes_detached_features_and_circular_padding():
    torch.manual_seed(0)
    drm = DRM(feat_channels=6, q_width=4, widths=(8, 8, 8)).eval()
    feats = torch.randn(1, 6, 4, 4, requires_grad=True)
    assoc = torch.randn(1, 9, 64, 64).softmax(1)
    w_bg, w_fg = drm(feats, assoc)
    assert w_bg.shape == w_fg.shape == (1, 9, 4, 4)
    torch.testing.assert_close(w_bg.sum(1), torch.ones(1, 4, 4))
    (w_bg.sum() + w_fg[:, 0].sum()).backward()
    assert feats.grad is None  # the transform convs see x5.detach()
    # circular padding: the first conv's output at column 0 depends on columns W-16 (wrapped)
    conv = drm.q_feats[0][0]
    assert conv.padding_mode == "circular" and conv.dilation == (16, 16)
    x = torch.zeros(1, 9, 64, 64)
    x2 = x.clone()
    x2[..., 48] = 1.0
    with torch.no_grad():
        assert not torch.allclose(conv(x)[..., 0], conv(x2)[..., 0])
        zeros = DRM(6, 4, (8, 8, 8), circular=False).q_feats[0][0]
        assert torch.allclose(zeros(x)[..., 0], zeros(x2)[..., 0])
    with pytest.raises(ValueError, match="output stride 16"):
        drm(torch.randn(1, 6, 8, 8), assoc)


# ------------------------------------------------------------------------------ the method
def test_parameter_groups_and_learning_rates():
    task = build_method("spcam", tiny_cfg(), 3)
    groups = {g["name"]: g for g in task.param_groups()["main"]}
    assert {n: g["lr_mult"] for n, g in groups.items()} == {
        "backbone.weight": 1.0, "backbone.bias": 2.0, "new.weight": 10.0,  # the classifier has no bias
        "drm.q_feats.weight": 10.0, "drm.q_feats.bias": 20.0, "drm.tran_conv.weight": 500.0,
        "drm.tran_conv.bias": 1000.0}
    assert all(groups[n]["weight_decay"] == 0.0 for n in groups if n.endswith("bias"))
    ids = lambda m: {id(p) for p in m.parameters()}  # noqa: E731
    assert {id(p) for p in groups["drm.tran_conv.weight"]["params"]} | \
        {id(p) for p in groups["drm.tran_conv.bias"]["params"]} == ids(task.net.drm.tran_conv)
    assert {id(p) for p in groups["new.weight"]["params"]} == ids(task.net.head)
    # the backbone's BatchNorm: frozen statistics, trained affine parameters (SP-CAM's FixedBatchNorm)
    bn = task.net.backbone.bn1
    assert not bn.training and bn.weight.requires_grad
    assert task.net.head.out_channels == 4  # background + 3 classes
    assert not any(p.requires_grad for p in task.spixel.parameters())


def test_frozen_superpixel_network_from_another_experiment(tmp_path):
    torch.manual_seed(1)
    source = SpixelNet()
    for m in source.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    exp = superpixel_experiment(tmp_path / "sp", source)
    task = build_method("spcam", tiny_cfg(superpixel_exp=str(exp)), 3)
    ctx = StepContext(step=0, max_step=10)
    task.on_train_start(ctx, resumed=True)  # a resumed run keeps its own weights
    assert not torch.equal(task.spixel.conv0a[1].running_mean, source.conv0a[1].running_mean)
    task.on_train_start(ctx, resumed=False)
    assert all(torch.equal(a, b) for a, b in zip(task.spixel.state_dict().values(), source.state_dict().values()))
    task.train()
    assert not task.spixel.training
    x = torch.randn(2, 3, 64, 64)
    batch = {"image": x, "label": torch.tensor([[1.0, 0, 0], [0, 1, 1]]),
             "maps": {"saliency": torch.rand(2, 64, 64)}}
    before = {k: v.clone() for k, v in task.spixel.state_dict().items()}
    out = task.training_step(batch, ctx)
    out["loss"].backward()
    assert all(p.grad is None for p in task.spixel.parameters())
    assert all(torch.equal(before[k], v) for k, v in task.spixel.state_dict().items())  # BN stats untouched
    assert {"cls", "sal"} <= set(out)
    # errors: unset, missing, unfinished
    with pytest.raises(ConfigError, match="superpixel_exp"):
        build_method("spcam", tiny_cfg(), 3).load_superpixel()
    with pytest.raises(CheckpointError, match="not a finished superpixel experiment"):
        build_method("spcam", tiny_cfg(superpixel_exp=str(tmp_path / "nope")), 3).load_superpixel()
    unfinished = superpixel_experiment(tmp_path / "sp2", epochs=5)
    with pytest.raises(CheckpointError, match="not finished"):
        build_method("spcam", tiny_cfg(superpixel_exp=str(unfinished)), 3).load_superpixel()


def test_training_needs_crops_of_whole_cells(tmp_path):
    cfg = tiny_cfg(superpixel_exp=str(superpixel_experiment(tmp_path / "sp")), sal_dir=str(tmp_path))
    cfg["augment"] = {"crop": 72}
    with pytest.raises(ConfigError, match="multiple of 16"):
        SPCAM.train_dataset(cfg, {"dataset": "synthetic", "root": str(tmp_path), "train_split": "train"})


def test_inference_walk_upsampling_and_the_stored_background():
    torch.manual_seed(0)
    task = build_method("spcam", tiny_cfg(walk_steps=3, bg_threshold=0.35), 3).eval()
    x = torch.randn(2, 3, 40, 56)  # not multiples of 16: resized to 48 x 64 and back
    with torch.no_grad():
        maps = task.view_maps(x, None)
        logits, assoc, resized = task._cells(x)
    assert resized and logits.shape == (2, 4, 3, 4) and maps.shape == (2, 4, 40, 56)
    # per view: probabilities (background included) stay a distribution up to the walk's border loss
    assert (maps >= 0).all() and (maps.sum(1) <= 1 + 1e-5).all()
    # the walk is what changes the maps: 0 steps = softmax upsampled through Q, a distribution
    # wherever no association points outside the image (pixels of the inner cells)
    task.walk_steps = 0
    with torch.no_grad():
        plain = task.view_maps(x, None)
        inner = task.view_maps(torch.randn(1, 3, 64, 64), None)[:, :, 16:48, 16:48].sum(1)
    assert not torch.allclose(plain, maps) and (plain.sum(1) <= 1 + 1e-5).all()
    torch.testing.assert_close(inner, torch.ones_like(inner), atol=1e-5, rtol=0)
    # saved maps: classes max-normalised, background = the constant threshold, image size exactly
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    from wsss.cams.inference import image_pyramid

    [out] = task.infer_cams(image_pyramid(image, (1.0, 0.5)), (50, 70), [np.array([0, 2])])
    assert out["hr_cam"].shape == (2, 50, 70) and out["cam"].shape == (2, 13, 18)
    assert torch.allclose(out["hr_cam"].amax((1, 2)), torch.ones(2), atol=1e-4)
    assert torch.all(out["hr_cam_bg"] == 0.35) and torch.all(out["cam_bg"] == 0.35)
    task.background = False
    [out] = task.infer_cams(image_pyramid(image, (1.0,)), (50, 70), [np.array([1])])
    assert "hr_cam_bg" not in out and out["hr_cam"].shape == (1, 50, 70)


def test_stored_background_equals_the_reference_argmax():
    """argmax over [th, normalised classes] = the reference's make_cam, x labels, channel 0 := th."""
    task = build_method("spcam", tiny_cfg(bg_threshold=0.3), 3)
    sums = torch.rand(3, 5, 6) * 4
    combined = task.combine(sums)
    ref = torch.relu(sums - 1e-5) / (sums.flatten(1).amax(1)[:, None, None] + 1e-5)
    ref[0] = 0.3
    assert torch.equal(combined.argmax(0), ref.argmax(0))
    assert math.isclose(float(combined[0].mean()), 0.3, rel_tol=1e-6)
