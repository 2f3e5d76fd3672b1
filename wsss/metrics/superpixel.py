"""Superpixel quality against a ground-truth label map: boundary recall / precision and the
achievable segmentation accuracy (docs/methods/spcam.md, "Superpixel benchmark").

- A boundary pixel of a label map is one whose label differs from its east or south neighbour.
- Boundary recall (BR): ground-truth boundary pixels with a superpixel boundary pixel within
  ``tolerance`` pixels (Chebyshev distance, a (2t+1)^2 window); boundary precision (BP): the
  converse. Both are returned as counts, so a split sums them before dividing.
- ASA: each superpixel takes its most frequent ground-truth label; the fraction of pixels
  (ignore label excluded) that then carry their ground-truth label.
"""

import numpy as np
from scipy import ndimage

IGNORE = 255


def label_boundaries(labels):
    """Boolean (H, W): pixels whose label differs from the east or the south neighbour."""
    lab = np.asarray(labels)
    out = np.zeros(lab.shape, bool)
    out[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    out[:-1, :] |= lab[:-1, :] != lab[1:, :]
    return out


def boundary_counts(superpixels, gt, tolerance=2):
    """``(gt_hit, gt_total, sp_hit, sp_total)`` for one image (see the module)."""
    sp_b, gt_b = label_boundaries(superpixels), label_boundaries(gt)
    size = 2 * int(tolerance) + 1
    near_sp = ndimage.maximum_filter(sp_b, size=size, mode="constant", cval=False)
    near_gt = ndimage.maximum_filter(gt_b, size=size, mode="constant", cval=False)
    return int((gt_b & near_sp).sum()), int(gt_b.sum()), int((sp_b & near_gt).sum()), int(sp_b.sum())


def asa_counts(superpixels, gt, ignore=IGNORE):
    """``(correct, total)`` pixels of the achievable segmentation accuracy for one image."""
    sp, g = np.asarray(superpixels).ravel(), np.asarray(gt).ravel()
    keep = g != ignore
    sp, g = sp[keep], g[keep].astype(np.int64)
    if sp.size == 0:
        return 0, 0
    _, sp_idx = np.unique(sp, return_inverse=True)
    table = np.zeros((sp_idx.max() + 1, int(g.max()) + 1), np.int64)
    np.add.at(table, (sp_idx, g), 1)
    return int(table.max(1).sum()), int(sp.size)
