"""Losses of the association network (docs/methods/spcam.md, "Superpixel network training").

- :func:`reconstruction_loss`: SpixelFCN's loss: pixel features (a one-hot "semantic" target
  and the pixel coordinates) pooled into cells and upsampled back through the associations must
  reproduce themselves: ``scale * [-(1/B) sum_p sum_k l_k log(r_k + 1e-8) + (m/S)(1/B) sum_p
  ||xy_r - xy||_2]`` (SP-CAM: l = one-hot(saliency > 0.2), m = 0.003, S = 16, scale = 0.005).
- :func:`cell_labels`: a label per cell from CAMs pooled into the cells, with ambiguous cells
  ignored.
- :func:`affinity_losses`: SP-CAM's terms on the cell affinities (ASAM) given those labels:
  ``press`` keeps a cell's self-affinity at most ``t`` where most of its 5 x 5 neighbourhood
  shares its label, ``diff`` drives its affinity to differently labelled cells to 0.
"""

import torch
import torch.nn.functional as F

from .ops import neighbours, pool_cells, upsample_cells

#: the self offset among the 25 affinity channels
CENTER = 12


def pixel_coordinates(b, h, w, device=None, dtype=torch.float32):
    """(B, 2, H, W) pixel coordinates, channel 0 the column (x), channel 1 the row (y)."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype),
                            indexing="ij")
    return torch.stack([xs, ys])[None].expand(b, 2, h, w)


def reconstruction_loss(assoc, target, cell=16, pos_weight=0.003, scale=0.005):
    """``(loss, semantic part, position part)`` (all scaled) of associations (B, 9, H, W) for a
    per-pixel distribution ``target`` (B, K, H, W) (see the module)."""
    b, _, h, w = target.shape
    xy = pixel_coordinates(b, h, w, target.device, target.dtype)
    feat = torch.cat([target, xy], 1)
    rec = upsample_cells(pool_cells(feat, assoc, cell), assoc, cell)
    sem = -(target * torch.log(rec[:, :-2] + 1e-8)).sum() / b
    pos = torch.linalg.vector_norm(rec[:, -2:] - xy, dim=1).sum() / b * pos_weight / cell
    return scale * (sem + pos), scale * sem, scale * pos


def binary_target(saliency, threshold=0.2):
    """One-hot (B, 2, H, W) of ``saliency > threshold`` from (B, 1, H, W) saliency in [0, 1]."""
    fg = (saliency > threshold).to(saliency.dtype)
    return torch.cat([1.0 - fg, fg], 1)


def cell_labels(pooled, bg_score=0.05, bg_step=0.5, fg_ratio=0.05):
    """``(labels, ignore)`` (B, h, w) of cells from foreground CAMs pooled into them (B, K, h, w).

    Label = argmax over [``bg_score``, CAMs] (0 = background, k + 1 = channel k); a cell is
    ignored when the label changes with the background at ``bg_score + bg_step``, or when it is
    foreground and its second-highest CAM exceeds ``fg_ratio`` times its highest."""
    b, k, h, w = pooled.shape
    const = pooled.new_ones(b, 1, h, w)
    low = torch.cat([const * bg_score, pooled], 1).argmax(1)
    high = torch.cat([const * (bg_score + bg_step), pooled], 1).argmax(1)
    top = pooled.topk(min(2, k), dim=1).values
    second = top[:, 1] if k > 1 else torch.zeros_like(top[:, 0])
    ignore = (low != high) | ((fg_ratio * top[:, 0] < second) & (low > 0))
    return low, ignore


def affinity_losses(affinity, labels, ignore, press_threshold=0.75, min_same=15):
    """``(press, diff)`` of cell affinities (B, 25, h, w) given cell ``labels`` and ``ignore``
    (B, h, w). Cells outside the image count as background; pairs with an ignored cell are
    skipped; "same" counts the 25 offsets, the cell itself included.

    ``press = sum relu((A_self - t) [#same > min_same]) / B``, ``diff = sum relu(sum_d A_d
    [label(s + d) != label(s)]) / B``."""
    b = labels.shape[0]
    near = neighbours(labels[:, None].to(affinity.dtype), 2)[:, 0]  # (B, 25, h, w), 0 = background outside
    near_ignored = neighbours(ignore[:, None].to(affinity.dtype), 2)[:, 0] > 0
    pairs = ~ignore[:, None] & ~near_ignored
    own = labels[:, None].to(affinity.dtype)
    same = (near == own) & pairs
    diff = (near != own) & pairs
    crowded = (same.sum(1) > min_same).to(affinity.dtype)
    press = F.relu((affinity[:, CENTER] - press_threshold) * crowded).sum() / b
    apart = F.relu((affinity * diff.to(affinity.dtype)).sum(1)).sum() / b
    return press, apart
