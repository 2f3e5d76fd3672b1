"""Composable transforms on sample dicts ``{"id", "image", "label", "mask", "maps"}``.

Geometric ops (ResizeLong, RandomCrop, HFlip, RandAugment's affine ops) act on ``image``,
``mask`` and every entry of ``maps`` together, so pixels stay aligned. A map's dtype says how
it moves (:func:`is_index_map`): integer maps (superpixel ids, label maps) and the mask are
index maps, sampled nearest with padding/fill 255 and turned into int64 tensors; float maps
(saliency, CAM hints) are resampled bilinearly with padding 0 and become float32 tensors.
Photometric ops act on the uint8 image only and must come before :class:`Normalize`. Randomness uses Python's ``random`` module, which PyTorch reseeds in every
DataLoader worker (numpy's global generator is not, and would repeat augmentations).

Padding of the image by :class:`RandomCrop`: a normalised (float) image is padded with 0, i.e.
the ImageNet mean, as in Puzzle-CAM/P-NOC where the crop follows normalisation; a uint8 image
is padded with the ImageNet mean in 0..255 (124, 116, 104), which normalises to ~0 as well.

A dataset hands its transform the decoded PIL image (``load_sample``): :class:`Compose`
converts it to the uint8 array before the first step without ``takes_pil`` (the resizes take
it and resize in PIL directly: one PIL -> array copy per sample instead of three, the same
pixels). Every other step sees the arrays of the sample contract.

The training pipeline of :func:`build_train_transform` is
``ResizeLong -> HFlip -> RandAugment -> ColorJitter -> [before_normalize] -> Normalize ->
RandomCrop -> [after_crop] -> ToTensor``, where the bracketed points take a method's own steps
(callables sample -> sample), e.g. superpixels computed on the final normalised crop.
"""

import functools

import random

import cv2
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from ..errors import ConfigError
from ..registry import Registry
from .io import image_hw

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MEAN_UINT8 = tuple(int(round(255 * m)) for m in IMAGENET_MEAN)
IGNORE = 255


def array_sample(sample):
    """``sample`` with a PIL image (a dataset's decoded image) as the uint8 array (H, W, 3) of
    the sample contract; any other sample as it is."""
    image = sample["image"]
    return {**sample, "image": np.asarray(image)} if isinstance(image, Image.Image) else sample


class Compose:
    """Apply transforms in order; a PIL image (a dataset's decoded image) is converted to the
    array before the first transform without a true ``takes_pil`` attribute."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, sample):
        for t in self.transforms:
            if not getattr(t, "takes_pil", False):
                sample = array_sample(sample)
            sample = t(sample)
        return array_sample(sample)

    def __repr__(self):
        return "Compose(" + ", ".join(type(t).__name__ for t in self.transforms) + ")"


def apply_transform(transform, sample):
    """``transform(sample)`` of a dataset's untransformed sample: a :class:`Compose` takes it
    as it is, any other transform (and ``None``) gets the image as the uint8 array."""
    if not isinstance(transform, Compose):
        sample = array_sample(sample)
    return sample if transform is None else transform(sample)


def is_index_map(arr):
    """True for an index map (integer dtype), False for a continuous map (float dtype).

    Index maps move nearest with fill 255 (:data:`IGNORE`), so their dtype must hold 255 and an
    id 255 reads as padding; bool and other dtypes are refused (store masks as uint8 0/1)."""
    dtype = np.asarray(arr).dtype
    if np.issubdtype(dtype, np.floating):
        return False
    if np.issubdtype(dtype, np.integer) and np.iinfo(dtype).max >= IGNORE:
        return True
    raise TypeError(f"a per-pixel map has dtype {dtype}: use an integer dtype that holds 255 (index map: "
                    "nearest, padding 255) or a float dtype (continuous map: bilinear, padding 0)")


def apply_geometric(sample, image_fn, index_fn, float_fn):
    """New sample dict with ``image_fn`` applied to the image, ``index_fn`` to the mask and the
    integer maps, ``float_fn`` to the float maps (see :func:`is_index_map`)."""
    out = dict(sample)
    out["image"] = image_fn(sample["image"])
    out["mask"] = None if sample.get("mask") is None else index_fn(sample["mask"])
    out["maps"] = {k: (index_fn if is_index_map(v) else float_fn)(v) for k, v in (sample.get("maps") or {}).items()}
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
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)


def flip_lr(arr):
    """``arr`` (H, W[, K]) mirrored left-right, contiguous: cv2 for uint8 and float32 (~30x
    numpy's reversed copy of an RGB image), numpy for other dtypes."""
    if arr.dtype in (np.uint8, np.float32):
        return _cv2_channels(lambda a: cv2.flip(a, 1), arr)
    return np.ascontiguousarray(arr[:, ::-1])


# --- geometric ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _nearest_source(n_in, n_out):
    """Source index of each of ``n_out`` pixels along one axis, as PIL's NEAREST resize picks it."""
    ramp = Image.fromarray(np.arange(n_in, dtype=np.int32)[None, :])
    return np.asarray(ramp.resize((n_out, 1), Image.NEAREST))[0]


def resize_nearest(arr, height, width):
    """Nearest resize of an (H, W) or (H, W, K) array of any dtype, pixel for pixel as PIL's."""
    ys, xs = _nearest_source(arr.shape[0], int(height)), _nearest_source(arr.shape[1], int(width))
    return arr[ys[:, None], xs]


def resize_sample(sample, height, width):
    """Resize to (height, width): image bicubic (PIL for uint8 arrays and PIL images), mask and
    index maps nearest, float maps bilinear."""
    size = (int(width), int(height))

    def image_fn(im):
        if isinstance(im, Image.Image) or im.dtype == np.uint8:
            pil = im if isinstance(im, Image.Image) else Image.fromarray(im)
            return np.asarray(pil.resize(size, Image.BICUBIC))
        return _cv2_channels(lambda a: cv2.resize(a, size, interpolation=cv2.INTER_CUBIC), im)

    def float_fn(m):
        return _cv2_channels(lambda a: cv2.resize(a, size, interpolation=cv2.INTER_LINEAR),
                             m.astype(np.float32, copy=False))

    return apply_geometric(sample, image_fn, lambda m: resize_nearest(m, height, width), float_fn)


class ResizeLong:
    """Resize so the long side is a random integer in [lo, hi] (inclusive); aspect ratio kept."""

    takes_pil = True

    def __init__(self, lo, hi=None):
        self.lo, self.hi = int(lo), int(lo if hi is None else hi)
        if not 0 < self.lo <= self.hi:
            raise ConfigError(f"ResizeLong needs 0 < lo <= hi, got ({lo}, {hi})")

    def __call__(self, sample):
        h, w = image_hw(sample["image"])
        scale = random.randint(self.lo, self.hi) / max(h, w)
        nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        if (nh, nw) == (h, w):
            return sample  # a PIL image stays one: Compose converts it for the next step
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
    """Random ``size`` crop (int or (h, w)); pads with 0/mean (image), 255 (mask, index maps),
    0 (float maps)."""

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
        return apply_geometric(sample, flip_lr, flip_lr, flip_lr)


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
    """torchvision-style colour jitter in numpy/cv2: factors in [1-b, 1+b], hue shift in [-h, h], random order;
    applied with probability ``p`` (torchvision's ``RandomApply``, AEFT: 0.8; 1 draws no extra number)."""

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, p=1.0):
        if not 0 <= hue <= 0.5:
            raise ConfigError(f"ColorJitter hue must be in [0, 0.5], got {hue}")
        if not 0 <= p <= 1:
            raise ConfigError(f"ColorJitter p must be in [0, 1], got {p}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.p = float(p)

    def __call__(self, sample):
        _require_uint8(sample["image"], "ColorJitter")
        if self.p < 1 and random.random() >= self.p:
            return sample
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


def warp_nearest(arr, matrix, fill=IGNORE):
    """Nearest affine warp of an (H, W) or (H, W, K) array of any dtype; outside pixels = ``fill``.

    cv2 warps the bytes of each pixel's source coordinates as single-channel uint8 images (the
    mask's own kernel, so every map picks the mask's pixels), then the values are gathered: ids
    of any integer width come through unchanged."""
    h, w = arr.shape[:2]
    if max(h, w) > 255 * 256:
        raise ValueError(f"warp_nearest supports sides up to 65280 pixels, got {w}x{h}")

    def warp(plane):  # out-of-image pixels get 255, a high byte no coordinate has
        return cv2.warpAffine(plane, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=255).astype(np.int64)

    ys, xs = np.indices((h, w))
    y_hi = warp((ys >> 8).astype(np.uint8))
    src_y = y_hi * 256 + warp((ys & 255).astype(np.uint8))
    src_x = warp((xs >> 8).astype(np.uint8)) * 256 + warp((xs & 255).astype(np.uint8))
    outside = y_hi == 255
    out = arr[np.where(outside, 0, src_y), np.where(outside, 0, src_x)]
    out[outside] = fill
    return out


def _affine_op(matrix_fn):
    """An op warping image (bilinear, fill 0), mask and index maps (nearest, 255) and float maps
    (bilinear, 0) alike."""

    def op(sample, v):
        h, w = sample["image"].shape[:2]
        m = np.asarray(matrix_fn(v, h, w), dtype=np.float64)
        return apply_geometric(sample, lambda a: _warp(a, m, cv2.INTER_LINEAR, (0, 0, 0)),
                               lambda a: warp_nearest(a, m),
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


def op_names(ops, table, who):
    """``ops`` (default: every op of ``table``) as a list, checked against ``table``."""
    names = list(ops or table)
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise ConfigError(f"unknown {who} ops {unknown}", fix=f"use some of {sorted(table)}")
    return names


class RandAugment:
    """RandAugment (Cubuk et al. 2020): ``n`` ops drawn uniformly with replacement, magnitude ``m`` of 10.

    Affine ops (rotate, shear, translate) move mask and maps with the image.
    """

    def __init__(self, n=2, m=9, ops=None):
        if not 0 <= m <= 10:
            raise ConfigError(f"RandAugment magnitude m must be in 0..10, got {m}")
        self.n, self.m = int(n), float(m)
        self.ops = op_names(ops, RANDAUGMENT_OPS, "RandAugment")

    def __call__(self, sample):
        for name in random.choices(self.ops, k=self.n):
            op, max_v = RANDAUGMENT_OPS[name]
            sample = op(sample, max_v * self.m / 10.0)
        return sample


# --- P-NOC's RandAugmentMC ---------------------------------------------------------------------
# The ordinary classifier of P-OC / P-NOC is trained with FixMatch's "RandAugmentMC" as P-NOC
# defines it (tools/ai/randaugment.py: fixmatch_augment_pool, RandAugmentMC(n=2, m=10)); see
# docs/methods/pnoc.md. Per op the level v is drawn from 1..m-1 and the op applies with p 0.5;
# parameters scale with v / 10 whatever m is. Geometric ops are PIL transforms with nearest
# resampling and black fill (PIL's defaults), reproduced here in index coordinates so that
# masks (nearest, 255) and maps (bilinear, 0) move with the image.

def _pil_affine_to_index(data):
    """PIL ``Image.transform(AFFINE, data)`` samples output pixel (x, y) at the input point
    ``(a (x + .5) + b (y + .5) + c, d (x + .5) + e (y + .5) + f)`` (pixel i spans [i, i + 1)); the
    same map in pixel-index coordinates (centres at integers), for ``cv2.warpAffine(...,
    WARP_INVERSE_MAP)``."""
    a, b, c, d, e, f = data
    return np.array([[a, b, c + 0.5 * (a + b) - 0.5], [d, e, f + 0.5 * (d + e) - 0.5]], dtype=np.float64)


def _pil_nearest(arr, data, fill):
    """PIL's NEAREST affine resampling of ``arr`` (H, W[, K]) with ``fill`` outside. Output (x, y)
    takes the input pixel at ``floor`` of the point above, computed as Pillow does for images of
    ordinary size: in 16.16 fixed point, each coefficient rounded to 1/65536 (so ties fall as
    there; translations are exact either way)."""
    h, w = arr.shape[:2]
    a, b, c, d, e, f = data
    fix = lambda v: np.int64(np.floor(v * 65536.0 + 0.5))  # noqa: E731
    ys, xs = np.mgrid[0:h, 0:w].astype(np.int64)
    sx = (fix(c + a * 0.5 + b * 0.5) + ys * fix(b) + xs * fix(a)) >> 16
    sy = (fix(f + d * 0.5 + e * 0.5) + ys * fix(e) + xs * fix(d)) >> 16
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    out = np.empty_like(arr)
    out[...] = fill
    out[inside] = arr[sy[inside], sx[inside]]
    return out


def _pil_rotate_data(degrees, w, h):
    """The AFFINE data of PIL's ``Image.rotate(degrees)`` (about the centre, no expand)."""
    t = -np.deg2rad(degrees)
    a, b, d, e = round(np.cos(t), 15), round(np.sin(t), 15), round(-np.sin(t), 15), round(np.cos(t), 15)
    cx, cy = w / 2.0, h / 2.0
    return a, b, a * -cx + b * -cy + cx, d, e, d * -cx + e * -cy + cy


def _mc_affine(data_fn):
    """An op moving image (nearest, black), mask and integer maps (nearest, 255) and float maps
    (bilinear, 0) by the PIL affine ``data_fn(v, w, h)``."""

    def op(sample, v):
        h, w = sample["image"].shape[:2]
        data = data_fn(v, w, h)
        m = _pil_affine_to_index(data)

        def map_fn(a):
            if np.issubdtype(a.dtype, np.integer):
                return _pil_nearest(a, data, IGNORE)
            return _warp(a.astype(np.float32), m, cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, 0)

        return apply_geometric(sample, lambda a: _pil_nearest(a, data, 0), lambda a: _pil_nearest(a, data, IGNORE),
                               map_fn)

    return op


def _enhance_factor(v):
    return v * 0.9 / 10 + 0.05  # levels 1..9 -> 0.14..0.86: these ops only ever weaken the image


#: name -> op(sample, v) for the level v in 1..m-1 (FixMatch's pool, P-NOC's parameters)
RANDAUGMENT_MC_OPS = {
    "AutoContrast": _pil_op(lambda im, v: ImageOps.autocontrast(im)),
    "Brightness": _pil_op(lambda im, v: ImageEnhance.Brightness(im).enhance(_enhance_factor(v))),
    "Color": _pil_op(lambda im, v: ImageEnhance.Color(im).enhance(_enhance_factor(v))),
    "Contrast": _pil_op(lambda im, v: ImageEnhance.Contrast(im).enhance(_enhance_factor(v))),
    "Equalize": _pil_op(lambda im, v: ImageOps.equalize(im)),
    "Identity": lambda s, v: s,
    "Posterize": _pil_op(lambda im, v: ImageOps.posterize(im, int(v * 4 / 10) + 4)),  # 4..7 bits
    "Rotate": _mc_affine(lambda v, w, h: _pil_rotate_data(_signed(int(v * 30 / 10)), w, h)),  # 3..27 degrees
    "Sharpness": _pil_op(lambda im, v: ImageEnhance.Sharpness(im).enhance(_enhance_factor(v))),
    "ShearX": _mc_affine(lambda v, w, h: (1, _signed(v * 0.3 / 10), 0, 0, 1, 0)),  # about the top-left corner
    "ShearY": _mc_affine(lambda v, w, h: (1, 0, 0, _signed(v * 0.3 / 10), 1, 0)),
    "Solarize": _pil_op(lambda im, v: ImageOps.solarize(im, 256 - int(v * 256 / 10))),  # threshold 26..231
    "TranslateX": _mc_affine(lambda v, w, h: (1, 0, int(_signed(v * 0.3 / 10) * w), 0, 1, 0)),
    "TranslateY": _mc_affine(lambda v, w, h: (1, 0, 0, 0, 1, int(_signed(v * 0.3 / 10) * h))),
}


def cutout_box(w, h, size=16):
    """P-NOC's ``CutoutAbs``: a centre drawn uniformly in the image, the box's corner clipped at 0
    and its far side at the image border; PIL's ``rectangle`` is inclusive, so the black square
    spans ``size + 1`` pixels when it is not clipped. Returns (y0, y1, x0, x1), end exclusive."""
    x0, y0 = random.uniform(0, w), random.uniform(0, h)
    x0, y0 = int(max(0, x0 - size / 2.0)), int(max(0, y0 - size / 2.0))
    x1, y1 = int(min(w, x0 + size)), int(min(h, y0 + size))
    return y0, y1 + 1, x0, x1 + 1


class RandAugmentMC:
    """P-NOC's RandAugment of the ordinary classifier (``augment.randaugment: {kind: mc, n: 2, m: 10}``).

    ``n`` ops drawn uniformly with replacement from :data:`RANDAUGMENT_MC_OPS`; each applies with
    probability 0.5 at a random level v in 1..m-1; then a black ``cutout``-pixel square
    (:func:`cutout_box`) always. Geometric ops move mask and maps with the image; the Cutout
    changes the image only.
    """

    def __init__(self, n=2, m=10, cutout=16, ops=None):
        if not 2 <= int(m) <= 10:
            raise ConfigError(f"RandAugmentMC magnitude m must be in 2..10 (levels 1..m-1), got {m}")
        self.n, self.m, self.cutout = int(n), int(m), int(cutout)
        self.ops = op_names(ops, RANDAUGMENT_MC_OPS, "RandAugmentMC")

    def __call__(self, sample):
        _require_uint8(sample["image"], "RandAugmentMC")
        for name in random.choices(self.ops, k=self.n):
            v = random.randint(1, self.m - 1)
            if random.random() < 0.5:
                sample = RANDAUGMENT_MC_OPS[name](sample, v)
        if self.cutout > 0:
            h, w = sample["image"].shape[:2]
            y0, y1, x0, x1 = cutout_box(w, h, self.cutout)
            image = sample["image"].copy()
            image[y0:y1, x0:x1] = 0
            sample = {**sample, "image": image}
        return sample


# ``augment.randaugment``: true (= {kind: fixed}) or {kind: fixed|mc, n, m, ...}
RANDAUGMENTS = Registry("randaugment kind")
RANDAUGMENTS.register("fixed")(RandAugment)
RANDAUGMENTS.register("mc")(RandAugmentMC)


def build_randaugment(value):
    """The RandAugment of an ``augment.randaugment`` value (true, or a dict with ``kind``)."""
    kw = dict(value) if isinstance(value, dict) else {}
    return RANDAUGMENTS.get(kw.pop("kind", "fixed"))(**kw)


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
    (all 255 when absent), label float32 (C,), maps (H, W) or (K, H, W): int64 for index maps,
    float32 for float maps."""

    def __call__(self, sample):
        import torch

        image = sample["image"]
        h, w = image.shape[:2]
        img = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32, copy=False)
        mask = sample.get("mask")
        mask = np.full((h, w), IGNORE, dtype=np.int64) if mask is None else mask.astype(np.int64)
        out = dict(sample)
        out["image"] = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        out["mask"] = torch.from_numpy(np.ascontiguousarray(mask))
        if sample.get("label") is not None:
            out["label"] = torch.as_tensor(np.asarray(sample["label"], dtype=np.float32))
        out["maps"] = {k: torch.from_numpy(np.ascontiguousarray(
            (v if v.ndim == 2 else v.transpose(2, 0, 1)).astype(np.int64 if is_index_map(v) else np.float32)))
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


#: Named points of the pipelines where a method inserts its own steps (callables sample -> sample):
#: ``before_normalize`` after the random/photometric ops, on the uint8 image at its augmented size;
#: ``after_crop`` on the final arrays (normalised image after the random crop), before ToTensor.
STEP_POINTS = ("before_normalize", "after_crop")


def _steps(steps):
    """``{point: step or [steps]}`` -> ``{point: [steps]}``; unknown points are a ConfigError."""
    steps = dict(steps or {})
    unknown = sorted(set(steps) - set(STEP_POINTS))
    if unknown:
        raise ConfigError(f"unknown transform step point(s) {unknown}", fix=f"use some of {list(STEP_POINTS)}")
    out = {p: [] for p in STEP_POINTS}
    for point, value in steps.items():
        out[point] = [value] if callable(value) else list(value)
        bad = [s for s in out[point] if not callable(s)]
        if bad:
            raise ConfigError(f"transform step {bad[0]!r} at {point!r} is not callable",
                              fix="pass callables sample -> sample")
    return out


def build_train_transform(aug_cfg=None, steps=None):
    """Training pipeline from e.g. ``{resize_long: [320, 640], crop: 512, hflip: true,
    color_jitter: 0.3, randaugment: false}`` (``randaugment: true`` = the fixed-magnitude
    :class:`RandAugment` with n 2, m 9; ``{kind: fixed|mc, n, m}`` picks one; ``mc`` is P-NOC's
    :class:`RandAugmentMC`).

    ``steps``: ``{point: callable or [callables]}`` at the points of :data:`STEP_POINTS`."""
    cfg = dict(aug_cfg or {})
    _check_keys(cfg)
    steps = _steps(steps)
    ts = []
    if cfg.get("resize_long"):
        ts.append(ResizeLong(*_range(cfg["resize_long"])))
    if cfg.get("hflip", True):
        ts.append(HFlip())
    ra = cfg.get("randaugment", False)
    if ra:
        ts.append(build_randaugment(ra))
    if cfg.get("color_jitter"):
        ts.append(_color_jitter(cfg["color_jitter"]))
    ts += steps["before_normalize"] + _normalize(cfg)
    if cfg.get("crop"):
        ts.append(RandomCrop(cfg["crop"]))
    ts += steps["after_crop"]
    ts.append(ToTensor())
    return Compose(ts)


def build_eval_transform(aug_cfg=None, steps=None):
    """Evaluation pipeline: optional fixed long side ``eval_resize_long``, Normalize, ToTensor.

    Accepts the same dict as :func:`build_train_transform` and ignores its random ops; ``steps``
    as there (no crop here: ``after_crop`` steps run on the normalised arrays before ToTensor).
    """
    cfg = dict(aug_cfg or {})
    _check_keys(cfg)
    steps = _steps(steps)
    ts = [ResizeLong(int(cfg["eval_resize_long"]))] if cfg.get("eval_resize_long") else []
    return Compose(ts + steps["before_normalize"] + _normalize(cfg) + steps["after_crop"] + [ToTensor()])
