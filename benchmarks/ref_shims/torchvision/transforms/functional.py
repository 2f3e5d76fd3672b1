"""Benchmark-only stand-in for ``torchvision.transforms.functional``: the image operations the
reference implementations' pipelines use, for PIL images and for tensors of shape (..., C, H, W),
with torchvision's documented semantics (sizes, rounding, value ranges, random draws from torch's
generator). Written for the wsss benchmarks (torchvision has no build for their CPU torch); not
torchvision's code, and not a general replacement for it.
"""

import numbers
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as nnf
from PIL import Image, ImageEnhance, ImageOps


class InterpolationMode(Enum):
    """Interpolation methods, by torchvision's names and values."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


_PIL_FILTERS = {
    InterpolationMode.NEAREST: Image.Resampling.NEAREST, InterpolationMode.NEAREST_EXACT: Image.Resampling.NEAREST,
    InterpolationMode.BILINEAR: Image.Resampling.BILINEAR, InterpolationMode.BICUBIC: Image.Resampling.BICUBIC,
    InterpolationMode.BOX: Image.Resampling.BOX, InterpolationMode.HAMMING: Image.Resampling.HAMMING,
    InterpolationMode.LANCZOS: Image.Resampling.LANCZOS,
}


def interpolation_mode(value):
    """An ``InterpolationMode`` from a mode, its string value or a PIL resampling constant."""
    if isinstance(value, InterpolationMode):
        return value
    if isinstance(value, str):
        return InterpolationMode(value)
    for mode, pil in _PIL_FILTERS.items():  # NEAREST comes before NEAREST_EXACT
        if pil == value:
            return mode
    raise ValueError(f"unknown interpolation {value!r}")


def _is_pil(img):
    return isinstance(img, Image.Image)


def get_dimensions(img):
    """``[channels, height, width]`` of a PIL image or a (..., C, H, W) / (H, W) tensor."""
    if _is_pil(img):
        return [len(img.getbands()), img.height, img.width]
    channels = 1 if img.ndim == 2 else img.shape[-3]
    return [channels, img.shape[-2], img.shape[-1]]


def get_image_size(img):
    """``[width, height]``."""
    _, h, w = get_dimensions(img)
    return [w, h]


# ------------------------------------------------------------------------------ conversion
def to_tensor(pic):
    """PIL image or HWC ndarray -> CHW tensor; 8-bit data becomes float32 in [0, 1], other data
    (PIL modes I, I;16, F; non-uint8 arrays) keeps its values."""
    if isinstance(pic, np.ndarray):
        arr = pic[:, :, None] if pic.ndim == 2 else pic
    else:
        dtype = {"I": np.int32, "I;16": np.int16, "F": np.float32}.get(pic.mode, np.uint8)
        arr = np.array(pic, dtype=dtype, copy=True)
        if pic.mode == "1":
            arr = arr * np.uint8(255)
        arr = arr.reshape(pic.height, pic.width, len(pic.getbands()))
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    return t.to(torch.get_default_dtype()).div(255) if t.dtype == torch.uint8 else t


def to_pil_image(pic, mode=None):
    """CHW tensor (float in [0, 1] is scaled by 255 and truncated to uint8) or HWC ndarray -> PIL image."""
    if torch.is_tensor(pic):
        if pic.ndim == 2:
            pic = pic[None]
        if pic.is_floating_point() and mode != "F":
            pic = pic.mul(255).byte()
        pic = pic.permute(1, 2, 0).numpy()
    if pic.ndim == 3 and pic.shape[2] == 1:
        pic = pic[:, :, 0]
    img = Image.fromarray(pic)
    return img.convert(mode) if mode and img.mode != mode else img


def normalize(tensor, mean, std, inplace=False):
    """``(tensor - mean) / std`` per channel of a float (..., C, H, W) tensor."""
    if not tensor.is_floating_point():
        raise TypeError(f"normalize needs a float tensor, got {tensor.dtype}")
    if not inplace:
        tensor = tensor.clone()
    mean = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device)
    std = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device)
    if (std == 0).any():
        raise ValueError("std has a zero: division by zero")
    if mean.ndim == 1:
        mean = mean.view(-1, 1, 1)
    if std.ndim == 1:
        std = std.view(-1, 1, 1)
    return tensor.sub_(mean).div_(std)


# ---------------------------------------------------------------------------------- geometry
def resized_output_size(height, width, size, max_size=None):
    """``[new_h, new_w]``: a pair ``size`` is (h, w); an int (or a 1-element sequence) is the new
    short side, the long side scaled with it and truncated (``int(size * long / short)``); with
    ``max_size`` the long side is capped and the short side scaled down (truncated) with it."""
    if isinstance(size, numbers.Number) or len(size) == 1:
        requested = int(size if isinstance(size, numbers.Number) else size[0])
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = requested, int(requested * long / short)
        if max_size is not None:
            if max_size <= requested:
                raise ValueError(f"max_size {max_size} must be larger than the requested size {requested}")
            if new_long > max_size:
                new_short, new_long = int(max_size * new_short / new_long), max_size
        return [new_long, new_short] if width <= height else [new_short, new_long]
    if max_size is not None:
        raise ValueError("max_size only goes with an int size")
    return [int(size[0]), int(size[1])]


def resize(img, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
    """Resize to ``size`` (see ``resized_output_size``); unchanged input when the size is the same.
    Tensors: nearest / bilinear / bicubic by ``torch.nn.functional.interpolate`` (antialiased
    when downscaling bilinear / bicubic), integer tensors rounded back to their dtype."""
    mode = interpolation_mode(interpolation)
    _, h, w = get_dimensions(img)
    out_h, out_w = resized_output_size(h, w, size, max_size)
    if (out_h, out_w) == (h, w):
        return img
    if _is_pil(img):
        return img.resize((out_w, out_h), _PIL_FILTERS[mode])
    if mode not in (InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT, InterpolationMode.BILINEAR,
                    InterpolationMode.BICUBIC):
        raise ValueError(f"tensors resize with nearest, bilinear or bicubic, not {mode.value}")
    x = img.reshape(-1, get_dimensions(img)[0], h, w)
    x = x if x.is_floating_point() else x.float()
    if mode in (InterpolationMode.BILINEAR, InterpolationMode.BICUBIC):
        y = nnf.interpolate(x, size=(out_h, out_w), mode=mode.value, align_corners=False, antialias=antialias)
    else:
        y = nnf.interpolate(x, size=(out_h, out_w), mode=mode.value)
    if not img.is_floating_point():
        if mode == InterpolationMode.BICUBIC and img.dtype == torch.uint8:
            y = y.clamp(0, 255)
        y = y.round().to(img.dtype)
    return y.reshape(*img.shape[:-2], out_h, out_w)


def crop(img, top, left, height, width):
    """The ``height`` x ``width`` box at (``top``, ``left``); outside the image it is zeros."""
    if _is_pil(img):
        return img.crop((left, top, left + width, top + height))
    _, h, w = get_dimensions(img)
    bottom, right = top + height, left + width
    out = img[..., max(top, 0):min(bottom, h), max(left, 0):min(right, w)]
    pads = [max(-left, 0), max(right - w, 0), max(-top, 0), max(bottom - h, 0)]
    return nnf.pad(out, pads, value=0) if any(pads) else out


def center_crop(img, output_size):
    """The central ``output_size`` box (an int: a square); rounding as ``round((h - th) / 2)``."""
    th, tw = (output_size, output_size) if isinstance(output_size, numbers.Number) else tuple(output_size)
    _, h, w = get_dimensions(img)
    return crop(img, round((h - th) / 2.0), round((w - tw) / 2.0), th, tw)


def resized_crop(img, top, left, height, width, size, interpolation=InterpolationMode.BILINEAR, antialias=True):
    """``crop`` then ``resize``."""
    return resize(crop(img, top, left, height, width), size, interpolation, antialias=antialias)


def hflip(img):
    """Mirror left-right."""
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if _is_pil(img) else img.flip(-1)


def vflip(img):
    """Mirror top-bottom."""
    return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM) if _is_pil(img) else img.flip(-2)


def _padding(padding):
    """(left, top, right, bottom) from an int, (all,), (left/right, top/bottom) or a 4-sequence."""
    if isinstance(padding, numbers.Number):
        return (int(padding),) * 4
    padding = [int(p) for p in padding]
    if len(padding) == 1:
        return tuple(padding * 4)
    if len(padding) == 2:
        return padding[0], padding[1], padding[0], padding[1]
    if len(padding) == 4:
        return tuple(padding)
    raise ValueError(f"padding takes 1, 2 or 4 values, got {len(padding)}")


def pad(img, padding, fill=0, padding_mode="constant"):
    """Pad the borders: ``constant`` (``fill``), ``edge`` (repeat the last pixel), ``reflect``
    (mirror without the edge pixel) or ``symmetric`` (mirror with it)."""
    if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
        raise ValueError(f"unknown padding_mode {padding_mode!r}")
    left, top, right, bottom = _padding(padding)
    if min(left, top, right, bottom) < 0:
        raise ValueError("negative padding is not supported by this stand-in")
    if _is_pil(img):
        if padding_mode == "constant":
            return ImageOps.expand(img, border=(left, top, right, bottom), fill=fill)
        arr = np.asarray(img)
        widths = ((top, bottom), (left, right)) + (((0, 0),) if arr.ndim == 3 else ())
        out = Image.fromarray(np.pad(arr, widths, mode=padding_mode))
        if img.mode == "P":
            out.putpalette(img.getpalette())
        return out
    if padding_mode == "constant":
        return nnf.pad(img, [left, right, top, bottom], value=fill)
    _, h, w = get_dimensions(img)
    # the source index of every output row / column: np.pad of an arange in the same mode
    rows = torch.from_numpy(np.pad(np.arange(h), (top, bottom), mode=padding_mode))
    cols = torch.from_numpy(np.pad(np.arange(w), (left, right), mode=padding_mode))
    return img.index_select(-2, rows).index_select(-1, cols)


# ------------------------------------------------------------------------------------ colour
def _blend(img, other, ratio):
    bound = 1.0 if img.is_floating_point() else 255.0
    return (ratio * img + (1.0 - ratio) * other).clamp(0, bound).to(img.dtype)


def rgb_to_grayscale(img, num_output_channels=1):
    """Luma (ITU-R 601-2: 0.2989 R + 0.587 G + 0.114 B; PIL's ``convert('L')`` for images),
    repeated over ``num_output_channels`` (1 or 3)."""
    if num_output_channels not in (1, 3):
        raise ValueError("num_output_channels must be 1 or 3")
    if _is_pil(img):
        gray = img.convert("L")
        return Image.merge("RGB", (gray, gray, gray)) if num_output_channels == 3 else gray
    if get_dimensions(img)[0] == 3:
        r, g, b = img.unbind(-3)
        gray = (0.2989 * r + 0.587 * g + 0.114 * b).to(img.dtype).unsqueeze(-3)
    else:
        gray = img.clone()
    return gray.expand(*gray.shape[:-3], num_output_channels, *gray.shape[-2:]) if num_output_channels == 3 else gray


to_grayscale = rgb_to_grayscale


def adjust_brightness(img, brightness_factor):
    """Scale the values by ``brightness_factor`` (0: black, 1: unchanged)."""
    if brightness_factor < 0:
        raise ValueError("brightness_factor must be non-negative")
    if _is_pil(img):
        return ImageEnhance.Brightness(img).enhance(brightness_factor)
    return _blend(img, torch.zeros_like(img), brightness_factor)


def adjust_contrast(img, contrast_factor):
    """Blend with the mean grey level (0: flat grey, 1: unchanged)."""
    if contrast_factor < 0:
        raise ValueError("contrast_factor must be non-negative")
    if _is_pil(img):
        return ImageEnhance.Contrast(img).enhance(contrast_factor)
    gray = rgb_to_grayscale(img) if get_dimensions(img)[0] == 3 else img
    mean = gray.to(torch.float32).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(img, mean, contrast_factor)


def adjust_saturation(img, saturation_factor):
    """Blend with the grey version (0: grey, 1: unchanged)."""
    if saturation_factor < 0:
        raise ValueError("saturation_factor must be non-negative")
    if _is_pil(img):
        return ImageEnhance.Color(img).enhance(saturation_factor)
    if get_dimensions(img)[0] == 1:
        return img
    return _blend(img, rgb_to_grayscale(img), saturation_factor)


def _rgb_to_hsv(x):
    r, g, b = x.unbind(-3)
    maxc, minc = x.amax(-3), x.amin(-3)
    flat = maxc == minc
    span = maxc - minc
    ones = torch.ones_like(maxc)
    s = span / torch.where(flat, ones, maxc)
    span = torch.where(flat, ones, span)
    rc, gc, bc = (maxc - r) / span, (maxc - g) / span, (maxc - b) / span
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(flat, torch.zeros_like(h), h)
    return torch.stack(((h / 6.0) % 1.0, s, maxc), dim=-3)


def _hsv_to_rgb(x):
    h, s, v = x.unbind(-3)
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    sector = sector.to(torch.int64) % 6
    p, q, t = (v * (1 - s)).clamp(0, 1), (v * (1 - s * f)).clamp(0, 1), (v * (1 - s * (1 - f))).clamp(0, 1)
    table = {"r": (v, q, p, p, t, v), "g": (t, v, v, q, p, p), "b": (p, p, t, v, v, q)}
    out = [sum(torch.where(sector == k, vals[k], torch.zeros_like(v)) for k in range(6)) for vals in table.values()]
    return torch.stack(out, dim=-3)


def adjust_hue(img, hue_factor):
    """Rotate the hue by ``hue_factor`` turns (in [-0.5, 0.5]). PIL: on the 8-bit H channel of
    ``convert('HSV')``, shifted by ``int(hue_factor * 255)`` modulo 256; grey modes unchanged."""
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"hue_factor {hue_factor} is not in [-0.5, 0.5]")
    if _is_pil(img):
        if img.mode in ("L", "1", "I", "F"):
            return img
        h, s, v = img.convert("HSV").split()
        shifted = (np.asarray(h, dtype=np.int16) + int(hue_factor * 255)) % 256
        return Image.merge("HSV", (Image.fromarray(shifted.astype(np.uint8)), s, v)).convert(img.mode)
    if get_dimensions(img)[0] == 1:
        return img
    x = img if img.is_floating_point() else img.to(torch.float32) / 255.0
    hsv = _rgb_to_hsv(x)
    hsv = torch.stack(((hsv[..., 0, :, :] + hue_factor) % 1.0, hsv[..., 1, :, :], hsv[..., 2, :, :]), dim=-3)
    out = _hsv_to_rgb(hsv)
    return out if img.is_floating_point() else (out * 255.0).to(img.dtype)
