"""C2AM network: embeddings, the flip check, oriented logits, multi-scale inference."""

import numpy as np
import pytest
import torch

from wsss.backbones import build_backbone
from wsss.saliency.ccam import C2AM, border_mean, is_background_map
from wsss.saliency import SALIENCY_METHODS
from wsss.saliency.infer import ccam_activation, ccam_activations


def small_c2am(seed=0):
    torch.manual_seed(seed)
    return C2AM(build_backbone("resnet18", output_stride=16, width=8))


def test_embeddings_are_sigmoid_weighted_means():
    model = small_c2am().eval()
    x = torch.randn(2, 3, 64, 48)
    out = model(x)
    feats = model.features(x)
    assert out["logits"].shape == (2, 1, 4, 3) and feats.shape[1] == 8 * 8 + 8 * 4
    p = torch.sigmoid(out["logits"])
    assert torch.allclose(out["fg"], (feats * p).mean((2, 3)), atol=1e-5)
    assert torch.allclose(out["bg"], (feats * (1 - p)).mean((2, 3)), atol=1e-5)
    # p + (1 - p) = 1: the two embeddings add up to the plain mean feature
    assert torch.allclose(out["fg"] + out["bg"], feats.mean((2, 3)), atol=1e-5)


def test_border_mean_by_hand():
    p = torch.zeros(1, 1, 8, 8)
    p[:, :, 0, :] = 1.0  # top row
    # strips of width 1: top mean 1, bottom 0, left 1/8, right 1/8
    assert border_mean(p, border=1).item() == pytest.approx((1 + 0 + 1 / 8 + 1 / 8) / 4)


def test_flip_check_detects_a_background_map():
    obj = torch.zeros(2, 1, 16, 16)
    obj[:, :, 5:11, 5:11] = 1.0  # a centred object, border empty
    assert not is_background_map(obj, border=4)
    assert is_background_map(1 - obj, border=4)
    # an object touching one side still reads as foreground
    side = torch.zeros(1, 1, 16, 16)
    side[:, :, :, :7] = 0.9
    assert not is_background_map(side, border=4)
    # the border is clipped to half the map on tiny maps
    assert is_background_map(torch.ones(1, 1, 2, 2), border=4)


def test_flipped_buffer_turns_the_logits_around_and_is_saved():
    model = small_c2am().eval()
    x = torch.randn(1, 3, 32, 32)
    z = model.foreground_logits(x)
    model.flipped.fill_(True)
    assert torch.allclose(model.foreground_logits(x), -z)
    state = model.state_dict()
    assert bool(state["flipped"])
    other = small_c2am(seed=1)
    other.load_state_dict(state)
    assert bool(other.flipped)


class ConstantMap(torch.nn.Module):
    """Stand-in whose logits are a fixed 'map' resampled to the input's stride-16 grid."""

    def __init__(self, pattern):
        super().__init__()
        self.pattern = pattern

    def foreground_logits(self, x):
        h, w = -(-x.shape[-2] // 16), -(-x.shape[-1] // 16)
        z = torch.nn.functional.interpolate(self.pattern, size=(h, w), mode="nearest")
        return z.expand(x.shape[0], 1, h, w)


def test_multiscale_activation_is_max_normalised_and_flip_symmetric():
    pattern = torch.zeros(1, 1, 4, 4)
    pattern[..., 1:3, 1:3] = 2.0
    pattern[..., 0, 0] = -5.0  # negative logits are cut by the ReLU
    image = np.zeros((64, 64, 3), np.uint8)
    act = ccam_activation(ConstantMap(pattern), image, scales=(1.0, 2.0), flip=True)
    assert act.shape == (64, 64) and act.dtype == np.float32
    assert act.max() == pytest.approx(1.0, abs=1e-4) and act.min() >= 0
    assert act[32, 32] > 0.9 and act[2, 2] == 0 and act[60, 60] < 0.05
    np.testing.assert_allclose(act, act[:, ::-1], atol=1e-5)  # flip TTA of a symmetric map


def test_activation_on_a_real_model_has_image_size():
    model = small_c2am().eval()
    image = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    act = ccam_activation(model, image, scales=(0.5, 1.0), flip=True)
    assert act.shape == (50, 70) and 0 <= act.min() and act.max() <= 1


def test_a_batch_equals_single_images_and_predictor_keeps_order():
    model = small_c2am().eval()
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (40, 56, 3), dtype=np.uint8) for _ in range(3)]
    batch = ccam_activations(model, images, scales=(0.5, 1.0), flip=True)
    for im, act in zip(images, batch):
        np.testing.assert_allclose(act, ccam_activation(model, im, scales=(0.5, 1.0), flip=True), atol=1e-5)
    cfg = {"model": {"backbone": "resnet18", "backbone_kwargs": {"width": 8}},
           "infer": {"scales": [1.0], "crf": None}}
    predict = SALIENCY_METHODS.get("ccam")().predictor(cfg, {"model." + k: v for k, v in model.state_dict().items()})
    samples = [{"image": images[0]}, {"image": images[1][:32]}, {"image": images[2]}]
    out = predict(samples)
    assert [o.shape for o in out] == [(40, 56), (32, 56), (40, 56)]
    assert all(set(np.unique(o)) <= {0, 255} for o in out)
