"""Sample-dict transforms: geometry on image/mask/maps together, padding values, photometric ops, tensors."""

import random

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from wsss.data import collate
from wsss.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, MEAN_UINT8, RANDAUGMENT_OPS, ColorJitter, HFlip,
                                  Normalize, RandAugment, RandomCrop, ResizeLong, ToTensor, adjust_contrast,
                                  adjust_hue, adjust_saturation, build_eval_transform, build_train_transform,
                                  crop_box, is_index_map, paste, resize_nearest, resize_sample, warp_nearest)
from wsss.errors import ConfigError

H, W = 6, 10


def make_sample(h=H, w=W, mask=True, seed=0):
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 4, (h, w)).astype(np.uint8)
    # channel 0 encodes the mask, so alignment after geometry can be checked pixel by pixel
    image = np.stack([m * 50, rng.integers(0, 256, (h, w)), rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
    maps = {"sal": m.astype(np.float32) / 3, "hint": np.stack([m == k for k in range(5)], -1).astype(np.float32)}
    return {"id": "x", "image": image, "label": np.array([1, 0], np.float32), "mask": m if mask else None,
            "maps": maps}


def assert_aligned(s):
    valid = s["mask"] != 255
    np.testing.assert_array_equal(s["image"][..., 0][valid], s["mask"][valid] * 50)
    np.testing.assert_allclose(s["maps"]["sal"][valid], s["mask"][valid] / 3, atol=1e-6)
    np.testing.assert_array_equal(s["maps"]["hint"][valid].argmax(-1), s["mask"][valid])


def test_crop_pads_with_ignore_and_mean():
    random.seed(0)
    s = make_sample()
    offsets = set()
    for _ in range(60):
        out = RandomCrop(8)(s)  # H 6 < 8 (padded), W 10 > 8 (cropped)
        assert out["image"].shape == (8, 8, 3) and out["mask"].shape == (8, 8)
        assert out["maps"]["hint"].shape == (8, 8, 5)
        rows = np.flatnonzero((out["mask"] != 255).any(1))
        dy = rows[0]
        assert len(rows) == H
        dx = next(x for x in range(W - 8 + 1) if np.array_equal(out["mask"][dy:dy + H], s["mask"][:, x:x + 8]))
        offsets.add((int(dy), dx))
        pad = np.ones((8, 8), bool)
        pad[dy:dy + H] = False
        assert (out["mask"][pad] == 255).all() and (out["maps"]["sal"][pad] == 0).all()
        assert (out["maps"]["hint"][pad] == 0).all() and (out["image"][pad] == MEAN_UINT8).all()
        np.testing.assert_array_equal(out["image"][dy:dy + H], s["image"][:, dx:dx + 8])
    assert offsets == {(y, x) for y in range(3) for x in range(3)}  # every placement reachable
    norm = RandomCrop(12)(Normalize()(s))
    pad = norm["mask"] == 255
    assert pad.sum() == 12 * 12 - H * W and (norm["image"][pad] == 0).all()  # float image padded with 0


def test_flip_moves_mask_and_maps_together():
    s = make_sample()
    out = HFlip(p=1.0)(s)
    np.testing.assert_array_equal(out["mask"], s["mask"][:, ::-1])
    np.testing.assert_array_equal(out["image"], s["image"][:, ::-1])
    np.testing.assert_array_equal(out["maps"]["hint"], s["maps"]["hint"][:, ::-1])
    assert_aligned(out)
    assert HFlip(p=0.0)(s) is s
    assert HFlip(p=1.0)(make_sample(mask=False))["mask"] is None


def test_resize_long_keeps_alignment_and_range():
    random.seed(1)
    s = make_sample(h=20, w=30)
    for _ in range(5):
        out = ResizeLong(45, 60)(s)
        h, w = out["mask"].shape
        assert 45 <= w <= 60 and h == round(20 * w / 30) and out["image"].shape[:2] == (h, w)
        assert out["maps"]["hint"].shape == (h, w, 5) and out["maps"]["sal"].dtype == np.float32
        assert set(np.unique(out["mask"])) <= set(np.unique(s["mask"]))
    exact = ResizeLong(60)(s)  # 2x nearest: each pixel becomes a 2x2 block
    np.testing.assert_array_equal(exact["mask"], s["mask"].repeat(2, 0).repeat(2, 1))
    const = {**s, "maps": {"c": np.full((20, 30, 5), 0.25, np.float32)}}
    np.testing.assert_allclose(ResizeLong(45)(const)["maps"]["c"], 0.25, atol=1e-6)
    with pytest.raises(ConfigError):
        ResizeLong(60, 45)


def test_color_jitter_matches_formulas():
    s = make_sample()
    img = s["image"].astype(np.float32)
    random.seed(3)
    f = random.uniform(0.7, 1.3)
    random.seed(3)
    out = ColorJitter(brightness=0.3)(s)
    np.testing.assert_array_equal(out["image"], np.round(np.clip(img * f, 0, 255)).astype(np.uint8))
    assert out["mask"] is s["mask"]
    gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(adjust_saturation(img, 0.0), np.repeat(gray[..., None], 3, -1), atol=1e-3)
    np.testing.assert_allclose(adjust_contrast(img, 0.0), np.full_like(img, gray.mean()), atol=1e-3)
    red = np.zeros((2, 2, 3), np.float32)
    red[..., 0] = 255
    np.testing.assert_allclose(adjust_hue(red, 0.5), np.tile([0, 255, 255], (2, 2, 1)), atol=1e-2)  # red -> cyan
    np.testing.assert_allclose(adjust_hue(img, 0.0), img, atol=1e-2)
    with pytest.raises(ValueError, match="before Normalize"):
        ColorJitter(0.3)(Normalize()(s))


def test_color_jitter_probability():
    """AEFT's RandomApply(ColorJitter, p=0.8): p = 0 never jitters, p = 1 draws no extra number."""
    s = make_sample()
    random.seed(5)
    always = ColorJitter(brightness=0.3)(s)["image"]
    random.seed(5)
    np.testing.assert_array_equal(ColorJitter(brightness=0.3, p=1.0)(s)["image"], always)
    assert ColorJitter(brightness=0.3, p=0.0)(s)["image"] is s["image"]
    random.seed(0)
    jitter = ColorJitter(brightness=0.3, p=0.8)
    applied = sum(jitter(s)["image"] is not s["image"] for _ in range(1000))
    assert 750 < applied < 850
    with pytest.raises(ConfigError, match="p must be"):
        ColorJitter(0.3, p=1.5)


def test_randaugment_ops_keep_alignment():
    s = make_sample(h=10, w=10)
    random.seed(0)
    for name in RANDAUGMENT_OPS:
        out = RandAugment(n=1, m=10, ops=[name])(s)
        assert out["image"].shape == (10, 10, 3) and out["image"].dtype == np.uint8
        assert out["maps"]["hint"].shape == (10, 10, 5)
        if name.startswith("Translate"):  # 3-pixel shift: exact, fill 255 / 0
            valid = out["mask"] != 255
            assert valid.sum() == 70
            assert_aligned(out)
        elif name in ("Rotate", "ShearX", "ShearY"):
            assert set(np.unique(out["mask"])) <= set(np.unique(s["mask"])) | {255}
        else:
            assert out["mask"] is s["mask"] and out["maps"] is s["maps"]
    with pytest.raises(ConfigError):
        RandAugment(ops=["Bogus"])


def test_normalize_and_totensor():
    s = make_sample()
    n = Normalize()(s)
    px = s["image"][2, 3].astype(np.float32)
    np.testing.assert_allclose(n["image"][2, 3], (px / 255 - IMAGENET_MEAN) / IMAGENET_STD, rtol=1e-6)
    t = ToTensor()(n)
    assert t["image"].dtype == torch.float32 and tuple(t["image"].shape) == (3, H, W)
    assert t["mask"].dtype == torch.int64 and tuple(t["mask"].shape) == (H, W)
    assert tuple(t["maps"]["hint"].shape) == (5, H, W) and tuple(t["maps"]["sal"].shape) == (H, W)
    np.testing.assert_array_equal(t["maps"]["hint"][2].numpy(), s["maps"]["hint"][..., 2])
    assert t["label"].dtype == torch.float32
    nomask = ToTensor()(make_sample(mask=False))
    assert (nomask["mask"] == 255).all() and float(nomask["image"].max()) <= 1.0


def test_normalize_every_pixel_and_channel():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (31, 17, 3), dtype=np.uint8)
    image[0, 0], image[0, 1] = 0, 255
    mean, std = (0.3, 0.5, 0.7), (0.2, 0.25, 0.1)
    out = Normalize(mean, std)({"image": image})["image"]
    want = (image.astype(np.float64) / 255 - np.asarray(mean)) / np.asarray(std)
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out, want, atol=2e-6)
    with pytest.raises(ValueError, match="channel"):
        Normalize()({"image": image[..., :1]})


def test_builders_and_collate():
    cfg = {"resize_long": [12, 20], "crop": 16, "hflip": True, "color_jitter": 0.3, "randaugment": {"n": 2, "m": 5}}
    t = build_train_transform(cfg)
    random.seed(0)
    batch = collate([t(make_sample(seed=i)) for i in range(3)])
    assert tuple(batch["image"].shape) == (3, 3, 16, 16) and tuple(batch["mask"].shape) == (3, 16, 16)
    assert tuple(batch["maps"]["hint"].shape) == (3, 5, 16, 16) and batch["id"] == ["x"] * 3
    e = build_eval_transform(cfg)(make_sample())
    assert tuple(e["image"].shape) == (3, H, W)
    assert tuple(build_eval_transform({"eval_resize_long": 20})(make_sample())["image"].shape) == (3, 12, 20)
    with pytest.raises(ConfigError, match="crop_size"):
        build_train_transform({"crop_size": 16})


# --- index maps: integer dtype -> nearest, fill 255, int64 tensors -------------------------------

IDS = np.array([3, 7, 300, 70000])  # ids beyond uint8 and int16 must come through unchanged


def index_sample(h=8, w=12, seed=0):
    """A 4-id int64 map (and a 2-channel int32 one) whose ids encode the mask: id = IDS[mask]."""
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 4, (h, w)).astype(np.uint8)
    sp = IDS[m].astype(np.int64)
    image = np.stack([m * 50, rng.integers(0, 256, (h, w)), rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
    return {"id": "x", "image": image, "label": np.array([1.0], np.float32), "mask": m,
            "maps": {"sp": sp, "pair": np.stack([sp, sp + 1], -1).astype(np.int32),
                     "sal": m.astype(np.float32) / 3}}


def assert_ids_follow_mask(s):
    """Every pixel's id is IDS[mask] where the mask is valid, 255 where it is padding."""
    valid = s["mask"] != 255
    assert set(np.unique(s["maps"]["sp"])) <= set(IDS) | {255}
    np.testing.assert_array_equal(s["maps"]["sp"][valid], IDS[s["mask"][valid]])
    assert (s["maps"]["sp"][~valid] == 255).all()
    np.testing.assert_array_equal(s["maps"]["pair"][..., 1][valid], s["maps"]["pair"][..., 0][valid] + 1)
    assert s["maps"]["sp"].dtype == np.int64 and s["maps"]["pair"].dtype == np.int32


def test_index_map_kind_is_its_dtype():
    assert is_index_map(np.zeros(2, np.uint8)) and is_index_map(np.zeros(2, np.int64))
    assert not is_index_map(np.zeros(2, np.float32)) and not is_index_map(np.zeros(2, np.float64))
    for bad in (np.bool_, np.int8):  # no room for the padding id 255
        with pytest.raises(TypeError, match="integer dtype that holds 255"):
            is_index_map(np.zeros(2, bad))


def test_index_maps_resize_nearest_with_ids_intact():
    s = index_sample()
    exact = resize_sample(s, 16, 24)  # 2x: each pixel becomes a 2x2 block
    np.testing.assert_array_equal(exact["maps"]["sp"], s["maps"]["sp"].repeat(2, 0).repeat(2, 1))
    for h, w in ((5, 7), (13, 29), (8, 12), (3, 31)):
        out = resize_sample(s, h, w)
        assert out["maps"]["sp"].shape == (h, w) and out["maps"]["pair"].shape == (h, w, 2)
        assert_ids_follow_mask(out)  # same pixels picked as the mask's
        assert out["maps"]["sal"].dtype == np.float32  # float maps stay bilinear floats
    random.seed(0)
    assert_ids_follow_mask(ResizeLong(17, 40)(s))


def test_nearest_resize_is_pils_for_the_mask():
    rng = np.random.default_rng(1)
    for _ in range(50):
        h, w, nh, nw = (int(v) for v in rng.integers(1, 60, 4))
        m = rng.integers(0, 256, (h, w)).astype(np.uint8)
        ref = np.asarray(Image.fromarray(m).resize((nw, nh), Image.NEAREST))
        np.testing.assert_array_equal(resize_nearest(m, nh, nw), ref)


def test_index_maps_crop_known_box_and_padding():
    s = index_sample(h=6, w=10)
    sp = s["maps"]["sp"]
    # a known box: rows 0..5 pasted at y 1 of an 8-row window, columns 2..9 of the 10
    np.testing.assert_array_equal(paste(sp, (0, 2, 1, 0, 6, 8), (8, 8), 255)[1:7], sp[:, 2:10])
    random.seed(5)
    for _ in range(20):
        state = random.getstate()
        box = crop_box((8, 8), 6, 10)
        random.setstate(state)
        out = RandomCrop(8)(s)
        sy, sx, dy, dx, ch, cw = box
        expect = np.full((8, 8), 255, np.int64)
        expect[dy:dy + ch, dx:dx + cw] = sp[sy:sy + ch, sx:sx + cw]
        np.testing.assert_array_equal(out["maps"]["sp"], expect)
        assert_ids_follow_mask(out)


def test_index_maps_flip_exactly():
    s = index_sample()
    out = HFlip(p=1.0)(s)
    np.testing.assert_array_equal(out["maps"]["sp"], s["maps"]["sp"][:, ::-1])
    np.testing.assert_array_equal(out["maps"]["pair"], s["maps"]["pair"][:, ::-1])
    assert_ids_follow_mask(out)


def test_index_maps_through_affine_ops():
    s = index_sample(h=10, w=10)
    sp = s["maps"]["sp"]
    turn = cv2.getRotationMatrix2D((4.5, 4.5), 90, 1.0)  # a quarter turn about the centre: a permutation
    np.testing.assert_array_equal(warp_nearest(sp, turn), np.rot90(sp))
    shift = np.array([[1.0, 0, 3], [0, 1, 0]])
    moved = warp_nearest(sp, shift)
    np.testing.assert_array_equal(moved[:, 3:], sp[:, :7])
    assert (moved[:, :3] == 255).all()
    random.seed(0)
    for name in ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"):
        for _ in range(3):
            out = RandAugment(n=1, m=10, ops=[name])(s)
            assert out["maps"]["sp"].shape == (10, 10)
            assert_ids_follow_mask(out)
            if name != "TranslateY":
                assert (out["mask"] == 255).any()


def test_nearest_warp_is_cv2s_for_the_mask():
    rng = np.random.default_rng(2)
    for k in range(100):
        h, w = (int(v) for v in rng.integers(2, 50, 2)) if k else (300, 270)  # sides past 255 too
        m = rng.integers(0, 256, (h, w)).astype(np.uint8)
        mat = np.array([[1 + rng.normal() * .3, rng.normal() * .4, rng.normal() * 5],
                        [rng.normal() * .4, 1 + rng.normal() * .3, rng.normal() * 5]])
        ref = cv2.warpAffine(m, mat, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=255)
        np.testing.assert_array_equal(warp_nearest(m, mat), ref)


def test_index_maps_become_int64_tensors_and_collate():
    cfg = {"resize_long": [10, 20], "crop": 16, "hflip": True, "randaugment": {"n": 2, "m": 10}}
    t = build_train_transform(cfg)
    random.seed(3)
    samples = [t(index_sample(seed=i)) for i in range(3)]
    for s in samples:
        assert s["maps"]["sp"].dtype == torch.int64 and s["maps"]["sal"].dtype == torch.float32
        valid = s["mask"] != 255
        assert torch.equal(s["maps"]["sp"][valid], torch.as_tensor(IDS)[s["mask"][valid]])
        assert (s["maps"]["sp"][~valid] == 255).all()
    batch = collate(samples)
    assert batch["maps"]["sp"].dtype == torch.int64 and tuple(batch["maps"]["sp"].shape) == (3, 16, 16)
    assert batch["maps"]["pair"].dtype == torch.int64 and tuple(batch["maps"]["pair"].shape) == (3, 2, 16, 16)
    e = build_eval_transform({"eval_resize_long": 24})(index_sample())
    assert e["maps"]["sp"].dtype == torch.int64 and tuple(e["maps"]["sp"].shape) == (16, 24)


# --- steps at named points -----------------------------------------------------------------------

class BlockIds:
    """A step writing an index map from the final crop: the id of each pixel's 4x4 block, and
    which of the blocks has a positive mean of normalised channel 0."""

    def __init__(self):
        self.seen = []

    def __call__(self, sample):
        im = sample["image"]
        self.seen.append((im.dtype, im.shape))
        h, w = im.shape[:2]
        blocks = (np.arange(h)[:, None] // 4) * ((w + 3) // 4) + np.arange(w)[None, :] // 4
        bright = np.array([im[..., 0][blocks == b].mean() > 0 for b in range(blocks.max() + 1)])
        return {**sample, "maps": {**sample["maps"], "blocks": blocks.astype(np.int32),
                                   "bright": bright[blocks].astype(np.uint8)}}


def test_step_after_crop_sees_the_final_normalised_crop():
    step, early = BlockIds(), []
    t = build_train_transform({"resize_long": [12, 20], "crop": 16, "hflip": True},
                              steps={"after_crop": step, "before_normalize": [lambda s: early.append(s["image"].dtype) or s]})
    random.seed(0)
    s = t(make_sample())
    assert step.seen == [(np.float32, (16, 16, 3))] and early == [np.uint8]
    blocks, bright = s["maps"]["blocks"], s["maps"]["bright"]
    assert blocks.dtype == bright.dtype == torch.int64 and tuple(blocks.shape) == (16, 16)
    for b in range(16):  # the ids describe the tensor the network gets: nothing moved afterwards
        inside = blocks == b
        assert bool(bright[inside].eq(int(s["image"][0][inside].mean() > 0)).all())
    e = build_eval_transform({}, steps={"after_crop": BlockIds()})(make_sample())
    assert tuple(e["maps"]["blocks"].shape) == (H, W)
    with pytest.raises(ConfigError, match="unknown transform step point"):
        build_train_transform({}, steps={"after_normalise": step})
    with pytest.raises(ConfigError, match="not callable"):
        build_train_transform({}, steps={"after_crop": [step, "slic"]})
