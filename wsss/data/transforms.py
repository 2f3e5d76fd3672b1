"""Composable transforms on sample dicts ``{"id", "image", "label", "mask", "maps"}``.

Geometric ops (ResizeLong, RandomCrop, HFlip, RandAugment's affine ops) act on ``image``,
``mask`` (nearest; padding/fill 255 = ignore) and every entry of ``maps`` (bilinear; padding 0),
so pixels stay aligned. Photometric ops act on the uint8 image only and must come before
:class:`Normalize`. Randomness uses Python's ``random`` module, which PyTorch reseeds in every
DataLoader worker (numpy's global generator is not, and would repeat augmentations).

Padding of the image by :class:`RandomCrop`: a normalised (float) image is padded with 0, i.e.
the ImageNet mean, as in Puzzle-CAM/P-NOC where the crop follows normalisation; a uint8 image
is padded with the ImageNet mean in 0..255 (124, 116, 104), which normalises to ~0 as well.
The training pipeline of :func:`build_train_transform` is
``ResizeLong -> HFlip -> RandAugment -> ColorJitter -> Normalize -> RandomCrop -> ToTensor``.
"""

import random

import cv2
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from ..errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MEAN_UINT8 = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)
IGNORE = 255


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, sample):
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self):
        return "Compose(" + ", ".join(type(t).__name__ for t in self.transforms) + ")"


def apply_geometric(sample, image_fn, mask_fn, map_fn):
    """New sample dict with ``image_fn``/``mask_fn``/``map_fn`` applied to image, mask and maps."""
    out = dict(sample)
    out["image"] = image_fn(sample["image"])
    out["mask"] = None if sample.get("mask") is None else mask_fn(sample["mask"])
    out["maps"] = {k: map_fn(v) for k, v in (sample.get("maps") or {}).items()}
    return out


def _require_uint8(image, who):
    if image.dtype != np.uint8:
        raise ValueError(f"{who} expects the uint8 image; place it before Normalize")


def _cv2_channels(fn, arr):
    """Apply a cv2 per-pixel op to (H, W) or (H, W, K) arrays of any K (cv2 caps channels at 4/512)."""
    if arr.ndim == 2:
        return fn(arr)
    parts = [fn(np.ascontiguousarray(arr[..., i:i + 4])) for i in range(0, arr.shape[2], 4)]
    parts = [p[..., None] if p.ndim == 2 else p for p in parts]
    return np.concatenate(parts, axis=2)


# --- geometric ---------------------------------------------------------------------------------

def resize_sample(sample, height, width):
    """Resize to (height, width): image bicubic (PIL for uint8), mask nearest, maps bilinear."""
    size = (int(width), int(height))

    def image_fn(im):
        if im.dtype == np.uint8:
            return np.asarray(Image.fromarray(im).resize(size, Image.BICUBIC))
        return _cv2_channels(lambda a: cv2.resize(a, size, interpolation=cv2.INTER_CUBIC), im)

    def mask_fn(m):
        return np.asarray(Image.fromarray(m).resize(size, Image.NEAREST))

    def map_fn(m):
        return _cv2_channels(lambda a: cv2.resize(a, size, interpolation=cv2.INTER_LINEAR), m.astype(np.float32))

    return apply_geometric(sample, image_fn, mask_fn, map_fn)


class ResizeLong:
    """Resize so the long side is a random integer in [lo, hi] (inclusive); aspect ratio kept."""

    def __init__(self, lo, hi=None):
        self.lo, self.hi = int(lo), int(lo if hi is None else hi)
        if not 0 < self.lo <= self.hi:
            raise ConfigError(f"ResizeLong needs 0 < lo <= hi, got ({lo}, {hi})")

    def __call__(self, sample):
        h, w = sample["image"].shape[:2]
        scale = random.randint(self.lo, self.hi) / max(h, w)
        nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        if (nh, nw) == (h, w):
            return sample
        return resize_sample(sample, nh, nw)


def crop_box(size, h, w):
    """Random placement of an (h, w) array in a (size_h, size_w) window, Puzzle-CAM style.

    Along each axis, a side longer than the window is cropped at a random offset, a shorter one
    is pasted at a random offset into the padded window. Returns ``(src_y, src_x, dst_y, dst_x,
    ch, cw)``.
    """
    sh, sw = size
    ch, cw = min(sh, h), min(sw, w)
    src_y, dst_y = (random.randrange(h - sh + 1), 0) if h > sh else (0, random.randrange(sh - h + 1))
    src_x, dst_x = (random.randrange(w - sw + 1), 0) if w > sw else (0, random.randrange(sw - w + 1))
    return src_y, src_x, dst_y, dst_x, ch, cw


def paste(arr, box, size, fill):
    """Window of ``size`` filled with ``fill`` holding ``arr``'s part selected by ``box``."""
    sy, sx, dy, dx, ch, cw = box
    out = np.empty(tuple(size) + arr.shape[2:], dtype=arr.dtype)
    out[...] = fill
    out[dy:dy + ch, dx:dx + cw] = arr[sy:sy + ch, sx:sx + cw]
    return out


class RandomCrop:
    """Random ``size`` crop (int or (h, w)); pads with 0/mean (image), 255 (mask), 0 (maps)."""

    def __init__(self, size):
        self.size = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)

    def __call__(self, sample):
        h, w = sample["image"].shape[:2]
        box = crop_box(self.size, h, w)
        image_fill = MEAN_UINT8 if sample["image"].dtype == np.uint8 else 0
        return apply_geometric(sample, lambda im: paste(im, box, self.size, image_fill),
                               lambda m: paste(m, box, self.size, IGNORE),
                               lambda m: paste(m, box, self.size, 0))


class HFlip:
    """Horizontal flip with probability ``p`` (image, mask and maps together)."""

    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, sample):
        if random.random() >= self.p:
            return sample
        flip = lambda a: np.ascontiguousarray(a[:, ::-1])  # noqa: E731
        return apply_geometric(sample, flip, flip, flip)


# --- photometric -------------------------------------------------------------------------------

def _gray(img):
    """ITU-R 601 luma of a float RGB image (H, W), as torchvision's rgb_to_grayscale."""
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def adjust_brightness(img, f):
    return np.clip(img * f, 0, 255)


def adjust_contrast(img, f):
    return np.clip(f * img + (1 - f) * _gray(img).mean(), 0, 255)


def adjust_saturation(img, f):
    return np.clip(f * img + (1 - f) * _gray(img)[..., None], 0, 255)


def adjust_hue(img, shift):
    """Rotate hue by ``shift`` turns (-0.5..0.5)."""
    hsv = cv2.cvtColor((img / 255.0).astype(np.float32), cv2.COLOR_RGB2HSV)  # H in degrees
    hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * shift, 360.0)
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0, 0, 255)


class ColorJitter:
    """torchvision-style colour jitter in numpy/cv2: factors in [1-b, 1+b], hue shift in [-h, h], random order."""

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
        if not 0 <= hue <= 0.5:
            raise ConfigError(f"ColorJitter hue must be in [0, 0.5], got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def __call__(self, sample):
        _require_uint8(sample["image"], "ColorJitter")
        ops = []
        for amount, fn in ((self.brightness, adjust_brightness), (self.contrast, adjust_contrast),
                           (self.saturation, adjust_saturation)):
            if amount > 0:
                ops.append((fn, random.uniform(max(0.0, 1 - amount), 1 + amount)))
        if self.hue > 0:
            ops.append((adjust_hue, random.uniform(-self.hue, self.hue)))
        if not ops:
            return sample
        random.shuffle(ops)
        img = sample["image"].astype(np.float32)
        for fn, f in ops:
            img = fn(img, f)
        return {**sample, "image": np.round(img).astype(np.uint8)}


# --- RandAugment -------------------------------------------------------------------------------

def _warp(arr, matrix, interp, fill):
    h, w = arr.shape[:2]
    fn = lambda a: cv2.warpAffine(a, matrix, (w, h), flags=interp,  # noqa: E731
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        return fn(arr)
    return _cv2_channels(fn, arr)


def _affine_op(matrix_fn):
    """An op warping image (bilinear, fill 0), mask (nearest, 255) and maps (bilinear, 0) alike."""

    def op(sample, v):
        h, w = sample["image"].shape[:2]
        m = np.asarray(matrix_fn(v, h, w), dtype=np.float64)
        return apply_geometric(sample, lambda a: _warp(a, m, cv2.INTER_LINEAR, (0, 0, 0)),
                               lambda a: _warp(a, m, cv2.INTER_NEAREST, IGNORE),
                               lambda a: _warp(a.astype(np.float32), m, cv2.INTER_LINEAR, 0))

    return op


def _pil_op(fn):
    """An op changing only the image through a PIL function ``fn(pil_image, v)``."""

    def op(sample, v):
        _require_uint8(sample["image"], "RandAugment")
        return {**sample, "image": np.asarray(fn(Image.fromarray(sample["image"]), v))}

    return op


def _signed(v):
    return v if random.random() < 0.5 else -v


# name -> (op, magnitude at M = 10); v passed to an op is magnitude * M / 10
RANDAUGMENT_OPS = {
    "Identity": (lambda s, v: s, 0),
    "AutoContrast": (_pil_op(lambda im, v: ImageOps.autocontrast(im)), 0),
    "Equalize": (_pil_op(lambda im, v: ImageOps.equalize(im)), 0),
    "Solarize": (_pil_op(lambda im, v: ImageOps.solarize(im, int(256 - v))), 256),
    "Posterize": (_pil_op(lambda im, v: ImageOps.posterize(im, max(1, 8 - int(v)))), 4),
    "Color": (_pil_op(lambda im, v: ImageEnhance.Color(im).enhance(1 + _signed(v))), 0.9),
    "Contrast": (_pil_op(lambda im, v: ImageEnhance.Contrast(im).enhance(1 + _signed(v))), 0.9),
    "Brightness": (_pil_op(lambda im, v: ImageEnhance.Brightness(im).enhance(1 + _signed(v))), 0.9),
    "Sharpness": (_pil_op(lambda im, v: ImageEnhance.Sharpness(im).enhance(1 + _signed(v))), 0.9),
    "Rotate": (_affine_op(lambda v, h, w: cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), _signed(v), 1.0)), 30),
    "ShearX": (_affine_op(lambda v, h, w: (lambda s: [[1, s, -s * (h / 2 - 0.5)], [0, 1, 0]])(_signed(v))), 0.3),
    "ShearY": (_affine_op(lambda v, h, w: (lambda s: [[1, 0, 0], [s, 1, -s * (w / 2 - 0.5)]])(_signed(v))), 0.3),
    "TranslateX": (_affine_op(lambda v, h, w: [[1, 0, _signed(v) * w], [0, 1, 0]]), 0.3),
    "TranslateY": (_affine_op(lambda v, h, w: [[1, 0, 0], [0, 1, _signed(v) * h]]), 0.3),
}


class RandAugment:
    """RandAugment (Cubuk et al. 2020): ``n`` ops drawn uniformly with replacement, magnitude ``m`` of 10.

    Affine ops (rotate, shear, translate) move mask and maps with the image.
    """

    def __init__(self, n=2, m=9, ops=None):
        if not 0 <= m <= 10:
            raise ConfigError(f"RandAugment magnitude m must be in 0..10, got {m}")
        self.n, self.m = int(n), float(m)
        names = list(ops or RANDAUGMENT_OPS)
        unknown = sorted(set(names) - set(RANDAUGMENT_OPS))
        if unknown:
            raise ConfigError(f"unknown RandAugment ops {unknown}", fix=f"use some of {sorted(RANDAUGMENT_OPS)}")
        self.ops = names

    def __call__(self, sample):
        for name in random.choices(self.ops, k=self.n):
            op, max_v = RANDAUGMENT_OPS[name]
            sample = op(sample, max_v * self.m / 10.0)
        return sample


# --- tensors -----------------------------------------------------------------------------------

class Normalize:
    """uint8 image -> float32 ``(x / 255 - mean) / std`` (ImageNet statistics by default)."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        # x * scale + shift per channel, as one cv2.transform (an affine colour map): ~15x faster
        # than numpy's broadcast over a last axis of 3; equal to within float32 rounding (5e-7)
        scale = 1.0 / (255.0 * self.std.astype(np.float64))
        shift = -self.mean.astype(np.float64) / self.std
        self.matrix = np.hstack([np.diag(scale), shift[:, None]]).astype(np.float32)

    def __call__(self, sample):
        image = sample["image"]
        _require_uint8(image, "Normalize")
        if image.ndim != 3 or image.shape[2] != len(self.mean):
            raise ValueError(f"Normalize has {len(self.mean)} channel statistics, the image is {image.shape}")
        x = cv2.transform(image.reshape(-1, 1, image.shape[2]).astype(np.float32), self.matrix)
        return {**sample, "image": x.reshape(image.shape)}


class ToTensor:
    """Arrays -> torch: image float (3, H, W) (uint8 scaled to [0, 1]), mask int64 (H, W)
    (all 255 when absent), label float32 (C,), maps float32 (H, W) or (K, H, W)."""

    def __call__(self, sample):
        import torch

        image = sample["image"]
        h, w = image.shape[:2]
        img = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
        mask = sample.get("mask")
        mask = np.full((h, w), IGNORE, dtype=np.int64) if mask is None else mask.astype(np.int64)
        out = dict(sample)
        out["image"] = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        out["mask"] = torch.from_numpy(np.ascontiguousarray(mask))
        if sample.get("label") is not None:
            out["label"] = torch.as_tensor(np.asarray(sample["label"], dtype=np.float32))
        out["maps"] = {k: torch.from_numpy(np.ascontiguousarray(
            (v if v.ndim == 2 else v.transpose(2, 0, 1)).astype(np.float32)))
            for k, v in (sample.get("maps") or {}).items()}
        return out


# --- builders ----------------------------------------------------------------------------------

AUGMENT_KEYS = {"resize_long", "crop", "hflip", "color_jitter", "randaugment", "normalize", "mean", "std",
                "eval_resize_long"}


def _check_keys(cfg):
    unknown = sorted(set(cfg) - AUGMENT_KEYS)
    if unknown:
        raise ConfigError(f"unknown augment key(s) {unknown}", fix=f"use some of {sorted(AUGMENT_KEYS)}")


def _range(value):
    if np.isscalar(value):
        return int(value), int(value)
    if len(value) != 2:
        raise ConfigError(f"resize_long must be a size or [lo, hi], got {value!r}")
    return int(value[0]), int(value[1])


def _color_jitter(value):
    """A float ``v`` gives (brightness, contrast, saturation, hue) = (v, v, v, v / 3): 0.3 is psa/IRN's setting."""
    if isinstance(value, dict):
        return ColorJitter(**value)
    v = float(value)
    return ColorJitter(v, v, v, v / 3)


def _normalize(cfg):
    if not cfg.get("normalize", True):
        return []
    return [Normalize(cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD))]


def build_train_transform(aug_cfg=None):
    """Training pipeline from e.g. ``{resize_long: [320, 640], crop: 512, hflip: true,
    color_jitter: 0.3, randaugment: false}`` (``randaugment: true`` = n 2, m 9, or ``{n, m}``)."""
    cfg = dict(aug_cfg or {})
    _check_keys(cfg)
    ts = []
    if cfg.get("resize_long"):
        ts.append(ResizeLong(*_range(cfg["resize_long"])))
    if cfg.get("hflip", True):
        ts.append(HFlip())
    ra = cfg.get("randaugment", False)
    if ra:
        ts.append(RandAugment(**(ra if isinstance(ra, dict) else {})))
    if cfg.get("color_jitter"):
        ts.append(_color_jitter(cfg["color_jitter"]))
    ts += _normalize(cfg)
    if cfg.get("crop"):
        ts.append(RandomCrop(cfg["crop"]))
    ts.append(ToTensor())
    return Compose(ts)


def build_eval_transform(aug_cfg=None):
    """Evaluation pipeline: optional fixed long side ``eval_resize_long``, Normalize, ToTensor.

    Accepts the same dict as :func:`build_train_transform` and ignores its random ops.
    """
    cfg = dict(aug_cfg or {})
    _check_keys(cfg)
    ts = [ResizeLong(int(cfg["eval_resize_long"]))] if cfg.get("eval_resize_long") else []
    return Compose(ts + _normalize(cfg) + [ToTensor()])
