"""benchmarks/ref_shims: our stand-ins for torchvision, wandb and mxnet (used only by the benchmarks
against the reference implementations) against hand-computed expectations of torchvision's
documented behaviour. Loaded under private names, so a real torchvision is never shadowed."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

SHIMS = Path(__file__).resolve().parents[1] / "benchmarks" / "ref_shims"


def load(package):
    name = f"_wsss_ref_shim_{package}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SHIMS / package / "__init__.py",
                                                      submodule_search_locations=[str(SHIMS / package)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


tv = load("torchvision")
T, F = tv.transforms, tv.transforms.functional


def rgb(h, w, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_to_tensor_scales_bytes_and_moves_channels_first():
    pixels = np.array([[[0, 51, 255], [102, 0, 0]]], np.uint8)  # 1 x 2, RGB
    t = T.ToTensor()(Image.fromarray(pixels))
    assert t.shape == (3, 1, 2) and t.dtype == torch.float32
    assert torch.allclose(t[:, 0, 0], torch.tensor([0.0, 0.2, 1.0]))
    assert torch.allclose(t[:, 0, 1], torch.tensor([0.4, 0.0, 0.0]))
    assert T.ToTensor()(Image.fromarray(pixels[..., 0])).shape == (1, 1, 2)  # mode L
    floats = np.full((2, 2, 3), 7.5, np.float32)
    assert torch.equal(F.to_tensor(floats), torch.full((3, 2, 2), 7.5))  # not bytes: not scaled


def test_normalize_per_channel_and_not_in_place():
    x = torch.tensor([[[1.0, 0.0]], [[0.5, 1.0]], [[0.25, 0.75]]])  # 3 x 1 x 2
    y = T.Normalize(mean=[0.5, 0.5, 0.25], std=[0.5, 0.25, 1.0])(x)
    assert torch.allclose(y, torch.tensor([[[1.0, -1.0]], [[0.0, 2.0]], [[0.0, 0.5]]]))
    assert x[0, 0, 0] == 1.0
    with pytest.raises(ValueError):
        F.normalize(x, [0, 0, 0], [1, 0, 1])


def test_hflip_pil_and_tensor():
    img = rgb(3, 4)
    assert np.array_equal(np.asarray(F.hflip(img)), np.asarray(img)[:, ::-1])
    t = torch.arange(6.0).reshape(1, 2, 3)
    assert torch.equal(T.RandomHorizontalFlip(p=1.0)(t), torch.tensor([[[2.0, 1, 0], [5, 4, 3]]]))
    assert T.RandomHorizontalFlip(p=0.0)(t) is t


def test_random_flip_draws_from_torch_generator():
    t = torch.arange(4.0).reshape(1, 1, 4)
    torch.manual_seed(3)
    expected = [bool(torch.rand(1) < 0.5) for _ in range(8)]
    torch.manual_seed(3)
    flip = T.RandomHorizontalFlip()
    assert [bool(flip(t)[0, 0, 0] == 3) for _ in range(8)] == expected


def test_resize_int_is_short_side_long_side_truncated():
    assert T.Resize(256)(rgb(375, 500)).size == (341, 256)  # 500 * 256 / 375 = 341.33
    assert T.Resize(256)(rgb(500, 375)).size == (256, 341)
    assert T.Resize(20)(rgb(30, 100)).size == (66, 20)  # 66.67 -> 66: truncated, not rounded
    assert T.Resize([20])(rgb(30, 100)).size == (66, 20)
    assert T.Resize((10, 40))(rgb(30, 100)).size == (40, 10)  # a pair is (h, w)
    assert T.Resize(20, max_size=50)(rgb(30, 100)).size == (50, 15)  # long side capped, short int(50 * 20 / 66)
    img = rgb(20, 30)
    assert T.Resize(20)(img) is img  # already that size


def test_resize_tensor_modes():
    t = torch.rand(3, 375, 500)
    assert T.Resize(256)(t).shape == (3, 256, 341)
    cams = torch.rand(1, 40, 60)
    assert T.Resize([20, 20])(cams).shape == (1, 20, 20)
    labels = torch.tensor([[[0, 0, 1, 1], [2, 2, 3, 3]]], dtype=torch.uint8)
    out = T.Resize((2, 2), interpolation=T.InterpolationMode.NEAREST)(labels)
    assert out.dtype == torch.uint8 and torch.equal(out, torch.tensor([[[0, 1], [2, 3]]], dtype=torch.uint8))
    assert F.interpolation_mode(Image.Resampling.BICUBIC) is T.InterpolationMode.BICUBIC
    flat = torch.full((3, 8, 8), 0.25)
    assert torch.allclose(T.Resize(4)(flat), torch.full((3, 4, 4), 0.25))  # antialiased bilinear keeps a constant


def test_random_crop_size_content_and_padding():
    img = rgb(30, 40)
    torch.manual_seed(0)
    top, left, h, w = T.RandomCrop.get_params(img, (10, 20))
    assert (h, w) == (10, 20) and 0 <= top <= 20 and 0 <= left <= 20
    assert T.RandomCrop(16)(img).size == (16, 16)
    torch.manual_seed(1)
    t = torch.arange(30.0 * 40).reshape(1, 30, 40)
    i, j, _, _ = T.RandomCrop.get_params(t, (10, 20))
    torch.manual_seed(1)
    assert torch.equal(T.RandomCrop((10, 20))(t), t[:, i:i + 10, j:j + 20])
    assert T.RandomCrop(50, pad_if_needed=True)(img).size == (50, 50)
    with pytest.raises(ValueError):
        T.RandomCrop(50)(img)
    assert T.RandomCrop(30)(t[:, :, :30]).shape == (1, 30, 30)  # the whole image


def test_crop_outside_is_zero():
    t = torch.ones(1, 2, 2)
    assert torch.equal(F.crop(t, -1, 0, 3, 3), torch.tensor([[[0.0, 0, 0], [1, 1, 0], [1, 1, 0]]]))


def test_pad_modes():
    t = torch.tensor([[[1.0, 2, 3]]])
    assert F.pad(t, [2, 0, 0, 0], padding_mode="reflect")[0, 0].tolist() == [3, 2, 1, 2, 3]
    assert F.pad(t, [2, 0, 0, 0], padding_mode="symmetric")[0, 0].tolist() == [2, 1, 1, 2, 3]
    assert F.pad(t, [2, 0, 0, 0], padding_mode="edge")[0, 0].tolist() == [1, 1, 1, 2, 3]
    assert F.pad(t, 1, fill=9).shape == (1, 3, 5)
    img = F.pad(Image.fromarray(np.zeros((2, 2), np.uint8)), (1, 2), fill=7)  # left/right 1, top/bottom 2
    assert img.size == (4, 6) and np.asarray(img)[0, 0] == 7


def test_random_resized_crop_size_and_fallback():
    torch.manual_seed(0)
    assert T.RandomResizedCrop(24, scale=(0.2, 1.0))(rgb(37, 50)).size == (24, 24)
    # a 10 x 100 image cannot hold a square of its whole area: the central 10 x 10 box
    assert T.RandomResizedCrop.get_params(rgb(10, 100), scale=(1.0, 1.0), ratio=(1.0, 1.0)) == (0, 45, 10, 10)


def test_compose_applies_in_order():
    assert T.Compose([lambda x: x + 1, lambda x: x * 2])(3) == 8
    assert T.Compose([lambda x: x * 2, lambda x: x + 1])(3) == 7


def test_color_jitter_ranges_and_tensor_ops():
    cj = T.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1)
    assert cj.brightness == [0.7, 1.3] and cj.hue == [-0.1, 0.1]
    assert T.ColorJitter(brightness=2.0).brightness == [0.0, 3.0]  # low end clipped at 0
    assert T.ColorJitter().brightness is None
    torch.manual_seed(0)
    order, b, c, s, h = T.ColorJitter.get_params(cj.brightness, None, None, cj.hue)
    assert sorted(order.tolist()) == [0, 1, 2, 3] and 0.7 <= b <= 1.3 and c is None and s is None and -0.1 <= h <= 0.1
    x = torch.tensor([[[0.2, 0.9]], [[0.4, 0.1]], [[0.6, 0.5]]])
    assert torch.allclose(F.adjust_brightness(x, 1.5), torch.tensor([[[0.3, 1.0]], [[0.6, 0.15]], [[0.9, 0.75]]]))
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    assert torch.allclose(F.rgb_to_grayscale(red), torch.tensor([[[0.2989]]]))
    assert torch.allclose(F.adjust_saturation(red, 0.0), torch.full((3, 1, 1), 0.2989))
    assert torch.allclose(F.adjust_hue(red, 1 / 3), torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1), atol=1e-5)
    assert torch.allclose(F.adjust_hue(red, -1 / 3), torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1), atol=1e-5)
    assert cj(rgb(8, 8)).size == (8, 8)


def test_pil_hue_shifts_the_8bit_hue_channel():
    red = Image.fromarray(np.array([[[255, 0, 0]]], np.uint8))
    g = np.asarray(F.adjust_hue(red, 1 / 3))[0, 0]  # H 0 -> about 85 of 256: green
    assert g[1] == 255 and g[0] < 10 and g[2] < 10


def test_grayscale_apply_and_to_pil():
    assert T.RandomGrayscale(p=1.0)(rgb(4, 4)).mode == "RGB"  # keeps 3 channels
    gray = np.asarray(T.RandomGrayscale(p=1.0)(rgb(4, 4)))
    assert (gray[..., 0] == gray[..., 1]).all()
    assert T.RandomApply([lambda x: x + 1], p=0.0)(1) == 1 and T.RandomApply([lambda x: x + 1], p=1.0)(1) == 2
    img = T.ToPILImage()(torch.tensor([[[0.0, 1.0]], [[0.5, 0.0]], [[1.0, 0.2]]]))
    assert img.mode == "RGB" and np.asarray(img)[0].tolist() == [[0, 127, 255], [255, 0, 51]]


def test_make_grid_tiles_with_padding():
    grid = tv.utils.make_grid(torch.ones(3, 1, 2, 2), nrow=2, padding=1)
    assert grid.shape == (3, 2 * 3 + 1, 2 * 3 + 1)  # 2 rows x 2 columns of 2 x 2 tiles, 1 px apart
    assert grid[:, 1:3, 1:3].eq(1).all() and grid[:, 0].eq(0).all() and grid[:, 4:6, 4:6].eq(0).all()


def test_wandb_and_mxnet_are_no_ops():
    wandb, mxnet = load("wandb"), load("mxnet")
    run = wandb.init(name="bench", config={"a": 1}, job_type="train")
    run.summary["val/best"] = 1.0
    assert wandb.run is run and wandb.log({"x": 1}, commit=False) is None
    wandb.Table(columns=["a"], data=[[1]])
    wandb.Image(np.zeros((2, 2)))
    run.finish()
    assert mxnet.nd.load("resnet_38d.params") == {}
