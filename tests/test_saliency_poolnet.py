"""PoolNet: output shape and range, modules, training signal, inference map."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsss.backbones import build_backbone
from wsss.saliency.infer import poolnet_saliency, to_uint8
from wsss.saliency.poolnet import FeatureAggregation, GlobalGuidance, PoolNet
from wsss.saliency.task import PoolNetTask


def small_poolnet(seed=0, norm_mode="frozen_affine"):
    torch.manual_seed(seed)
    return PoolNet(build_backbone("resnet18", output_stride=16, norm_mode=norm_mode, width=8), width=8)


@pytest.mark.parametrize("size", [(64, 64), (72, 88), (33, 47)])
def test_output_shape_and_range(size):
    model = small_poolnet().eval()
    z = model(torch.randn(2, 3, *size))
    assert z.shape == (2, 1, *size)
    p = torch.sigmoid(z)
    assert torch.isfinite(z).all() and p.min() >= 0 and p.max() <= 1


def test_fam_pools_and_fuses():
    fam = FeatureAggregation(4, 6, fuse=True)
    x, lateral, guide = torch.randn(1, 4, 8, 8), torch.randn(1, 6, 16, 16), torch.randn(1, 6, 16, 16)
    assert fam(x, lateral, guide).shape == (1, 6, 16, 16)
    # with zero branch convs the module is conv_fuse(conv_sum(up(relu x)) + lateral + guide)
    for c in fam.convs:
        torch.nn.init.zeros_(c.weight)
    up = F.interpolate(F.relu(x), size=(16, 16), mode="bilinear", align_corners=True)
    assert torch.allclose(fam(x, lateral, guide), fam.conv_fuse(fam.conv_sum(up) + lateral + guide), atol=1e-6)
    # a map smaller than the largest pool (8) still works (global pooling)
    assert FeatureAggregation(4, 4, fuse=False)(torch.randn(1, 4, 3, 5)).shape == (1, 4, 3, 5)


def test_ggm_gives_one_guide_per_level():
    ggm = GlobalGuidance(16, 12, [12, 6, 6, 3])
    sizes = [(4, 4), (8, 8), (16, 16), (32, 32)]
    guides = ggm(torch.randn(2, 16, 4, 4), sizes)
    assert [g.shape for g in guides] == [(2, c, *s) for c, s in zip([12, 6, 6, 3], sizes)]


def test_every_new_layer_gets_gradients_and_backbone_bn_is_frozen():
    cfg = {"model": {"backbone": "resnet18", "backbone_kwargs": {"width": 8}, "width": 8}}
    task = PoolNetTask(cfg)
    bn = task.model.backbone.bn1
    assert not bn.weight.requires_grad and not task.model.backbone.bn1.training
    target = torch.zeros(2, 64, 64)
    target[:, 16:48, 16:48] = 1
    batch = {"image": torch.randn(2, 3, 64, 64), "maps": {"saliency": target, "valid": torch.ones(2, 64, 64)}}
    out = task.training_step(batch, ctx=None)
    logits = task.model(batch["image"])[:, 0]
    expected = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / 2
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    out["loss"].backward()
    for name, p in task.model.named_parameters():
        if p.requires_grad and not name.startswith("backbone."):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_invalid_pixels_carry_no_loss():
    cfg = {"model": {"backbone": "resnet18", "backbone_kwargs": {"width": 8}, "width": 8}}
    task = PoolNetTask(cfg).eval()
    image = torch.randn(1, 3, 32, 32)
    valid = torch.zeros(1, 32, 32)
    valid[:, :, :16] = 1
    a = task.training_step({"image": image, "maps": {"saliency": torch.zeros(1, 32, 32), "valid": valid}}, None)
    t = torch.zeros(1, 32, 32)
    t[:, :, 16:] = 1  # targets changed only where invalid
    b = task.training_step({"image": image, "maps": {"saliency": t, "valid": valid}}, None)
    assert a["loss"].item() == pytest.approx(b["loss"].item())


def test_predicted_map_is_image_size_and_in_range():
    model = small_poolnet().eval()
    for shape in [(60, 90, 3), (130, 120, 3)]:  # the first runs at 2x (side <= 100), as the reference
        image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
        prob = poolnet_saliency(model, image)
        assert prob.shape == shape[:2] and prob.dtype == np.float32 and 0 <= prob.min() and prob.max() <= 1
        png = to_uint8(prob)
        assert png.dtype == np.uint8 and np.array_equal(png, np.rint(prob * 255).astype(np.uint8))


def test_kaiming_init_keeps_the_decoder_signal_that_the_published_init_loses():
    """At a narrow width the N(0, 0.01) init shrinks the logits' spread by orders of magnitude
    (why the synthetic config uses model.init=kaiming); the score bias is 0 either way."""
    x = torch.randn(2, 3, 64, 64)
    spread = {}
    for init in ("normal", "kaiming"):
        torch.manual_seed(0)
        model = PoolNet(build_backbone("resnet18", output_stride=16, norm_mode="frozen_affine", width=8), width=8,
                        init=init).eval()
        spread[init] = model(x).std().item()
    assert spread["normal"] < 1e-4 and spread["kaiming"] > 100 * spread["normal"], spread
    with pytest.raises(Exception, match="init"):
        PoolNet(build_backbone("resnet18", output_stride=16, width=8), width=8, init="xavier")
