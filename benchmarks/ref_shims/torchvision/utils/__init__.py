"""Benchmark-only stand-in for ``torchvision.utils``: ``make_grid`` and ``save_image``, which
P-NOC's ``tools.general.cam_utils`` imports at module level (C2AM-H training imports it). Our own
code following torchvision's documented behaviour; not torchvision's code."""

import math

import torch
from PIL import Image

__all__ = ["make_grid", "save_image"]


def make_grid(tensor, nrow=8, padding=2, normalize=False, value_range=None, scale_each=False, pad_value=0.0):
    """Tile a (B, C, H, W) batch (or a list of (C, H, W) images) into one (3, H', W') image,
    ``nrow`` images a row, ``padding`` pixels of ``pad_value`` around each; one channel is repeated
    to three; ``normalize`` maps ``value_range`` (default: the min and max, per image with
    ``scale_each``) to [0, 1]."""
    if isinstance(tensor, (list, tuple)):
        tensor = torch.stack(list(tensor))
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim == 3:
        tensor = tensor[None] if tensor.shape[0] in (1, 3) else tensor[:, None]
    if tensor.shape[1] == 1:
        tensor = tensor.repeat(1, 3, 1, 1)
    if normalize:
        tensor = tensor.clone()
        for t in (tensor if scale_each else [tensor]):
            lo, hi = value_range if value_range is not None else (float(t.min()), float(t.max()))
            t.clamp_(min=lo, max=hi).sub_(lo).div_(max(hi - lo, 1e-5))
    if tensor.shape[0] == 1:
        return tensor[0]
    n, c, h, w = tensor.shape
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    ph, pw = h + padding, w + padding
    grid = tensor.new_full((c, rows * ph + padding, cols * pw + padding), pad_value)
    for k in range(n):
        r, q = divmod(k, cols)
        grid[:, r * ph + padding:r * ph + padding + h, q * pw + padding:q * pw + padding + w] = tensor[k]
    return grid


def save_image(tensor, fp, format=None, **kwargs):
    """``make_grid(tensor, **kwargs)`` written as an 8-bit image (values in [0, 1] -> [0, 255], rounded)."""
    grid = make_grid(tensor, **kwargs)
    arr = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    Image.fromarray(arr).save(fp, format=format)
