"""Class-specific erasing of P-OC / P-NOC: the sampled class, the label split and the two masks.

For each image one class ``r`` is drawn uniformly from its positive labels; its CAM (ReLU,
bilinear upsampling to the image size with ``align_corners=False``) becomes an erasing mask:

- :func:`soft_mask` divides by the maximum over the WHOLE batch (OC-CSE's "global" norm; under
  torchrun the global batch of every rank), and
  the CAM generator's CSE loss classifies ``x * (1 - mask)`` with ``r`` removed from the label;
- :func:`hard_keep` divides by each image's own maximum and keeps the pixels ``<= delta``;
  P-NOC's ordinary classifier learns to find every class, ``r`` included, in ``x * keep``.

See docs/methods/poc.md.
"""

import torch
import torch.nn.functional as F

from ..engine.distributed import global_max

NO_CLASS = -1


def sample_classes(labels, generator=None):
    """One positive class per image, drawn uniformly: (B,) int64; ``-1`` for an image without
    any positive label (nothing is erased there). ``labels``: multi-hot (B, C)."""
    positive = labels > 0.5
    has_any = positive.any(dim=1)
    weights = torch.where(has_any[:, None], positive, torch.ones_like(positive)).float()
    picked = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    return torch.where(has_any, picked, torch.full_like(picked, NO_CLASS))


def remove_class(labels, classes):
    """``labels`` with each image's ``classes[b]`` set to 0 (images with ``-1`` unchanged)."""
    onehot = F.one_hot(classes.clamp(min=0), labels.shape[1]).to(labels.dtype)
    onehot = onehot * (classes >= 0)[:, None].to(labels.dtype)
    return (labels - onehot).clamp(min=0)


def class_maps(cams, classes, size):
    """ReLU of each image's CAM of class ``classes[b]``, upsampled (bilinear, corners not
    aligned) to ``size`` = (H, W): (B, 1, H, W); all zero where ``classes[b] == -1``."""
    b = torch.arange(cams.shape[0], device=cams.device)
    maps = F.relu(cams[b, classes.clamp(min=0)])[:, None]
    maps = maps * (classes >= 0)[:, None, None, None].to(maps.dtype)
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)


def soft_mask(cams, classes, size, eps=1e-5):
    """The CSE mask: :func:`class_maps` divided by their maximum over the whole batch (+eps),
    every rank's images included (:func:`wsss.engine.distributed.global_max`).

    Differentiable (the CAM generator learns through it)."""
    maps = class_maps(cams, classes, size)
    return maps / (global_max(maps) + eps)


def hard_keep(cams, classes, size, delta=0.2, eps=1e-5):
    """The NOC keep-mask: 1 where :func:`class_maps` divided by the image's own maximum (+eps)
    is ``<= delta``, else 0 (float, same dtype as ``cams``; not differentiable)."""
    maps = class_maps(cams, classes, size)
    peak = maps.amax(dim=(1, 2, 3), keepdim=True)
    return (maps / (peak + eps) <= delta).to(cams.dtype)


def linear_schedule(step, max_step, start, end, fraction=1.0):
    """``start`` -> ``end`` linearly, reaching ``end`` at ``fraction`` of ``max_step`` and
    staying there (P-NOC's ``linear_schedule``; ``fraction`` 0 means ``end`` from the start)."""
    if fraction <= 0:
        return end
    value = start + (end - start) * step / (max_step * fraction)
    return min(value, end) if end >= start else max(value, end)
