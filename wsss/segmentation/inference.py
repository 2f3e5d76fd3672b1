"""Multi-scale + flip inference: the mean of the logits over every view, at image size.

For scales s and flips f, view (s, f) is the image resized to round(s*H) x round(s*W) and
optionally flipped; the model's logits for it are resized back to H x W (bilinear) and
un-flipped. The prediction is the mean over all views, then softmax (+ dCRF), then argmax (as
ICAM/SEAM's codebase computes it). P-NOC's script sums each flip pair and averages over scales,
i.e. twice these logits: same argmax, sharper softmax before the CRF; ``flip_sum=True``
reproduces that.

Input resizes (``infer.resize``, :data:`INPUT_RESIZES`): ``pil_bicubic`` resizes the uint8
image with PIL's bicubic filter, which is antialiased when it shrinks (P-NOC's
``segmentation/inference.py``; the CAM and C2AM-H inference do the same), then normalises;
``bilinear`` resizes the normalised tensor bilinearly (no antialiasing). See
``docs/methods/deeplab.md``.
"""

import torch
import torch.nn.functional as F

from ..cams.inference import image_pyramid, normalize
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError


def scaled_size(size, scale):
    """(round(s*H), round(s*W)), at least 1 pixel."""
    return tuple(max(1, int(round(s * scale))) for s in size)


def bilinear_views(image, scales):
    """A (3, H, W) tensor resized bilinearly to every scale (identity at the image's size)."""
    size = tuple(image.shape[-2:])
    return [image if scaled_size(size, s) == size else
            F.interpolate(image[None], size=scaled_size(size, s), mode="bilinear", align_corners=False)[0]
            for s in scales]


#: ``infer.resize`` -> f(uint8 HxWx3 image, scales, mean, std) -> normalised (3, h_s, w_s) inputs
INPUT_RESIZES = {
    "pil_bicubic": image_pyramid,
    "bilinear": lambda image, scales, mean, std: bilinear_views(normalize(image, mean, std), scales),
}


@torch.no_grad()
def pyramid_logits(model, inputs, size, flip=True, align_corners=False, flip_sum=False):
    """Mean logits (K, H, W) of ``model`` over the per-scale ``inputs`` ((3, h_s, w_s) tensors)
    x {identity, h-flip}, each resized back to ``size`` = (H, W).

    ``model(x)`` must return logits at ``x``'s resolution (see ``SegmentationModel.forward``).
    """
    total, views = None, 0
    for x in inputs:
        x = x[None]
        if flip:
            x = torch.cat([x, x.flip(-1)], dim=0)
        out = model(x).float()
        out = F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=align_corners)
        if flip:
            out = out[:1] + out[1:].flip(-1)
        total = out[0] if total is None else total + out[0]
        views += 2 if flip else 1
    if flip and flip_sum:
        views //= 2
    return total / views


@torch.no_grad()
def multiscale_logits(model, image, scales=(0.5, 1.0, 1.5, 2.0), flip=True, align_corners=False,
                      flip_sum=False):
    """Mean logits (K, H, W) for a normalised (3, H, W) image tensor, resized bilinearly."""
    if image.dim() != 3:
        raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(image.shape)}")
    return pyramid_logits(model, bilinear_views(image, scales), image.shape[-2:], flip, align_corners, flip_sum)


def image_logits(model, image, scales=(0.5, 1.0, 1.5, 2.0), flip=True, align_corners=False, flip_sum=False,
                 resize="pil_bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD, device="cpu"):
    """Mean logits (K, H, W) for a uint8 (H, W, 3) image; ``resize`` names how the inputs of
    the scales are made (:data:`INPUT_RESIZES`)."""
    if resize not in INPUT_RESIZES:
        raise ConfigError(f"infer.resize={resize!r}", fix=f"use one of {', '.join(INPUT_RESIZES)}")
    inputs = [x.to(device) for x in INPUT_RESIZES[resize](image, scales, mean, std)]
    return pyramid_logits(model, inputs, image.shape[:2], flip, align_corners, flip_sum)
