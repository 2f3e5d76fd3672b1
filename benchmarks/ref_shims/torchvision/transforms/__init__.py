"""Benchmark-only stand-in for ``torchvision.transforms``: the transform classes the reference
implementations build their pipelines from, with torchvision's documented behaviour (argument
forms, output sizes, random parameters drawn from torch's generator in torchvision's order).
Written for the wsss benchmarks (torchvision has no build for their CPU torch); not torchvision's
code, and not a general replacement for it.
"""

import math
import numbers

import torch

from . import functional
from . import functional as F
from .functional import InterpolationMode

__all__ = ["ColorJitter", "Compose", "InterpolationMode", "Lambda", "Normalize", "RandomApply", "RandomCrop",
           "RandomGrayscale", "RandomHorizontalFlip", "RandomResizedCrop", "Resize", "ToPILImage", "ToTensor",
           "functional"]


def _pair(size):
    if isinstance(size, numbers.Number):
        return int(size), int(size)
    size = tuple(int(s) for s in size)
    return (size[0], size[0]) if len(size) == 1 else size


class Compose:
    """Apply ``transforms`` in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self):
        return "Compose(" + ", ".join(map(repr, self.transforms)) + ")"


class Lambda:
    """Apply a user function."""

    def __init__(self, lambd):
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)


class ToTensor:
    """``functional.to_tensor``: HWC uint8 -> CHW float in [0, 1]."""

    def __call__(self, pic):
        return F.to_tensor(pic)


class ToPILImage:
    """``functional.to_pil_image``."""

    def __init__(self, mode=None):
        self.mode = mode

    def __call__(self, pic):
        return F.to_pil_image(pic, self.mode)


class Normalize:
    """``(x - mean) / std`` per channel of a float tensor."""

    def __init__(self, mean, std, inplace=False):
        self.mean, self.std, self.inplace = mean, std, inplace

    def __call__(self, tensor):
        return F.normalize(tensor, self.mean, self.std, self.inplace)


class Resize:
    """``functional.resize``: an int ``size`` is the new short side, a pair is (h, w)."""

    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
        self.size = size
        self.interpolation = F.interpolation_mode(interpolation)
        self.max_size, self.antialias = max_size, antialias

    def __call__(self, img):
        return F.resize(img, self.size, self.interpolation, self.max_size, self.antialias)

    def __repr__(self):
        return f"Resize(size={self.size}, interpolation={self.interpolation.value})"


class RandomCrop:
    """A random ``size`` box (an int: a square), after optional ``padding`` and, with
    ``pad_if_needed``, padding of a side shorter than the box."""

    def __init__(self, size, padding=None, pad_if_needed=False, fill=0, padding_mode="constant"):
        self.size = _pair(size)
        self.padding, self.pad_if_needed, self.fill, self.padding_mode = padding, pad_if_needed, fill, padding_mode

    @staticmethod
    def get_params(img, output_size):
        """``(top, left, height, width)`` of a uniformly drawn box of ``output_size`` (h, w)."""
        _, h, w = F.get_dimensions(img)
        th, tw = output_size
        if h < th or w < tw:
            raise ValueError(f"crop size {(th, tw)} is larger than the image {(h, w)}")
        if (h, w) == (th, tw):
            return 0, 0, h, w
        top = torch.randint(0, h - th + 1, size=(1,)).item()
        left = torch.randint(0, w - tw + 1, size=(1,)).item()
        return top, left, th, tw

    def __call__(self, img):
        if self.padding is not None:
            img = F.pad(img, self.padding, self.fill, self.padding_mode)
        _, h, w = F.get_dimensions(img)
        th, tw = self.size
        if self.pad_if_needed and w < tw:
            img = F.pad(img, [tw - w, 0], self.fill, self.padding_mode)
        if self.pad_if_needed and h < th:
            img = F.pad(img, [0, th - h], self.fill, self.padding_mode)
        return F.crop(img, *self.get_params(img, self.size))


class RandomResizedCrop:
    """A random box of ``scale`` x the area and aspect ``ratio`` (log-uniform), resized to ``size``."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0),
                 interpolation=InterpolationMode.BILINEAR, antialias=True):
        self.size = _pair(size)
        self.scale, self.ratio = scale, ratio
        self.interpolation, self.antialias = F.interpolation_mode(interpolation), antialias

    @staticmethod
    def get_params(img, scale, ratio):
        """``(top, left, height, width)``: up to 10 draws of (area fraction, log aspect ratio),
        the first box that fits; else the whole image cropped centrally to the nearest allowed ratio."""
        _, height, width = F.get_dimensions(img)
        area = height * width
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
            aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
            w = round(math.sqrt(target_area * aspect))
            h = round(math.sqrt(target_area / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = torch.randint(0, height - h + 1, size=(1,)).item()
                left = torch.randint(0, width - w + 1, size=(1,)).item()
                return top, left, h, w
        in_ratio = width / height
        if in_ratio < min(ratio):
            w, h = width, round(width / min(ratio))
        elif in_ratio > max(ratio):
            h, w = height, round(height * max(ratio))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img):
        top, left, h, w = self.get_params(img, self.scale, self.ratio)
        return F.resized_crop(img, top, left, h, w, self.size, self.interpolation, self.antialias)


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p`` (one ``torch.rand(1)`` draw per call)."""

    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, img):
        return F.hflip(img) if torch.rand(1) < self.p else img


class RandomGrayscale:
    """Grey with probability ``p``, keeping the number of channels."""

    def __init__(self, p=0.1):
        self.p = p

    def __call__(self, img):
        channels = F.get_dimensions(img)[0]
        return F.rgb_to_grayscale(img, num_output_channels=channels) if torch.rand(1) < self.p else img


class RandomApply:
    """Apply all of ``transforms`` with probability ``p``."""

    def __init__(self, transforms, p=0.5):
        self.transforms, self.p = list(transforms), p

    def __call__(self, img):
        if self.p < torch.rand(1):
            return img
        for t in self.transforms:
            img = t(img)
        return img


def _jitter_range(value, name, center=1.0, bound=(0.0, float("inf")), clip_first_on_zero=True):
    """A number v -> [center - v, center + v] (the low end clipped at 0 for factors); a pair as
    given; ``None`` when the range is the single point ``center`` (no change)."""
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
        value = [center - float(value), center + float(value)]
        if clip_first_on_zero:
            value[0] = max(value[0], 0.0)
    else:
        value = [float(v) for v in value]
        if len(value) != 2:
            raise ValueError(f"{name} takes a number or a (min, max) pair")
    if not bound[0] <= value[0] <= value[1] <= bound[1]:
        raise ValueError(f"{name} range {value} is not inside {bound}")
    return None if value[0] == value[1] == center else value


class ColorJitter:
    """Random brightness, contrast, saturation and hue changes, applied in a random order."""

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0):
        self.brightness = _jitter_range(brightness, "brightness")
        self.contrast = _jitter_range(contrast, "contrast")
        self.saturation = _jitter_range(saturation, "saturation")
        self.hue = _jitter_range(hue, "hue", center=0.0, bound=(-0.5, 0.5), clip_first_on_zero=False)

    @staticmethod
    def get_params(brightness, contrast, saturation, hue):
        """``(order, b, c, s, h)``: a permutation of the 4 operations, then one uniform factor per
        given range (``None`` for a range that is ``None``)."""
        order = torch.randperm(4)
        factors = [None if r is None else float(torch.empty(1).uniform_(r[0], r[1]))
                   for r in (brightness, contrast, saturation, hue)]
        return (order, *factors)

    def __call__(self, img):
        order, *factors = self.get_params(self.brightness, self.contrast, self.saturation, self.hue)
        ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
        for i in order.tolist():
            if factors[i] is not None:
                img = ops[i](img, factors[i])
        return img

    def __repr__(self):
        return (f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue})")
