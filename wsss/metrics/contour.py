"""Contour (boundary) F-score of label maps, as ICAM defines and implements it.

Definition ``"icam"`` (ICAM's ``contour_fscore.py``, itself built on the DAVIS boundary
measure), for every foreground class c of every image:

- ground-truth void (255) becomes background first; prediction values that are not c are "not c";
- binary masks gt == c and pred == c; a boundary pixel is one whose value differs from its east,
  south or south-east neighbour (outside the image counts as 0; on the last row only the east
  neighbour is compared, on the last column only the south one; the bottom-right pixel is never
  a boundary);
- tolerance r = ceil(0.008 * image diagonal) pixels, applied by dilating each boundary map with
  a disk of radius r (x^2 + y^2 <= r^2);
- counts summed over the whole split per class: predicted boundary pixels within r of a
  ground-truth boundary pixel (``pred_matched``), ground-truth boundary pixels within r of a
  predicted one (``gt_matched``), and the two boundary totals;
- precision = pred_matched / n_pred, recall = gt_matched / n_gt, F = 2PR / (P + R) (0 when
  P + R = 0). A class with no boundary pixel in either ground truth or prediction over the whole
  split scores F = 1 (P = R = 1); boundary pixels on one side only give F = 0. The reported
  number is the mean F over ALL foreground classes.

ICAM's code calls the ground-truth ratio "precision" and the prediction ratio "recall" (its
arguments are passed in swapped order); F is symmetric and unaffected. This module uses the
standard names; ``summarize_contour`` also lists ICAM's names for cross-checking.

See docs/methods/evaluation.md.
"""

import math

import cv2
import numpy as np

from ..registry import Registry

DEFINITIONS = Registry("contour F-score definition")
IGNORE = 255
COUNT_FIELDS = ("pred_matched", "gt_matched", "n_pred", "n_gt")


def disk(radius):
    """uint8 disk footprint of side 2r+1: pixels with x^2 + y^2 <= r^2."""
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx * xx + yy * yy <= r * r).astype(np.uint8)


def boundary_map(mask):
    """Boolean boundary map of a binary mask (east / south / south-east rule, see module doc)."""
    b = np.asarray(mask, dtype=bool)
    out = np.zeros(b.shape, dtype=bool)
    if b.shape[0] == 0 or b.shape[1] == 0:
        return out
    inner = b[:-1, :-1]
    out[:-1, :-1] = (inner != b[:-1, 1:]) | (inner != b[1:, :-1]) | (inner != b[1:, 1:])
    out[-1, :-1] = b[-1, :-1] != b[-1, 1:]
    out[:-1, -1] = b[:-1, -1] != b[1:, -1]
    return out


def tolerance_pixels(shape, bound_th=0.008):
    """Match tolerance in pixels: ``bound_th`` itself if >= 1, else ceil(bound_th * diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    h, w = shape[:2]
    return int(math.ceil(bound_th * math.sqrt(float(h) * h + float(w) * w)))


def _present_classes(label_map, num_classes):
    hist = cv2.calcHist([np.ascontiguousarray(label_map)], [0], None, [256], [0, 256]).ravel()
    return {c for c in range(1, num_classes) if hist[c] > 0}


@DEFINITIONS.register("icam")
def icam_counts(gt, pred, num_classes, bound_th=0.008):
    """``(K - 1, 4)`` int64 counts (``COUNT_FIELDS``) for foreground classes 1..K-1 of one image."""
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    if gt.dtype != np.uint8 or pred.dtype != np.uint8:
        raise ValueError("contour counts take uint8 label maps")
    gt = np.where(gt == IGNORE, np.uint8(0), gt)
    counts = np.zeros((num_classes - 1, 4), dtype=np.int64)
    present = _present_classes(gt, num_classes) | _present_classes(pred, num_classes)
    if not present:  # classes in neither map have no boundary: zero counts
        return counts
    footprint = disk(tolerance_pixels(gt.shape, bound_th))
    height, width = gt.shape
    for c in sorted(present):
        gt_c = gt == c
        pred_c = pred == c
        # Work in the classes' bounding box grown by one pixel: every boundary pixel lies
        # inside it, and the box's own last row / column is then either the image's (same
        # rule) or all zero (no boundary either way). Counts are taken only at boundary
        # pixels, so dilating inside the box is exact too.
        x, y, w, h = cv2.boundingRect((gt_c | pred_c).view(np.uint8))
        box = (slice(max(y - 1, 0), min(y + h + 1, height)), slice(max(x - 1, 0), min(x + w + 1, width)))
        gt_b = boundary_map(gt_c[box])
        pred_b = boundary_map(pred_c[box])
        gt_dil = cv2.dilate(gt_b.view(np.uint8), footprint).view(bool)
        pred_dil = cv2.dilate(pred_b.view(np.uint8), footprint).view(bool)
        counts[c - 1] = (np.count_nonzero(pred_b & gt_dil), np.count_nonzero(gt_b & pred_dil),
                         np.count_nonzero(pred_b), np.count_nonzero(gt_b))
    return counts


def contour_counts(gt, pred, num_classes, definition="icam", **kw):
    """Per-image contour match counts under a named definition (see ``DEFINITIONS``)."""
    return DEFINITIONS.get(definition)(gt, pred, num_classes, **kw)


def contour_scores(counts):
    """Per-class precision, recall, F (fractions) from counts summed over a split (ICAM rules)."""
    counts = np.asarray(counts, dtype=np.float64)
    pm, gm, n_pred, n_gt = counts.T
    precision = np.divide(pm, n_pred, out=np.ones_like(pm), where=n_pred > 0)
    recall = np.divide(gm, n_gt, out=np.ones_like(gm), where=n_gt > 0)
    # one side without boundary pixels: the other ratio is 0 (nothing to match), so F = 0
    precision[(n_pred > 0) & (n_gt == 0)] = 0.0
    recall[(n_gt > 0) & (n_pred == 0)] = 0.0
    denom = precision + recall
    f = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return precision, recall, f


def summarize_contour(counts, fg_class_names, definition="icam"):
    """Report dict (percent): mean F over foreground classes and per-class P / R / F."""
    DEFINITIONS.get(definition)  # unknown names fail here with the list of known ones
    precision, recall, f = contour_scores(counts)
    if len(fg_class_names) != len(f):
        raise ValueError(f"{len(fg_class_names)} class names for {len(f)} foreground classes")
    return {
        "definition": definition,
        "mean_f": float(f.mean() * 100) if len(f) else 0.0,
        "per_class": {
            name: {"f": float(f[i] * 100), "precision": float(precision[i] * 100),
                   "recall": float(recall[i] * 100)}
            for i, name in enumerate(fg_class_names)
        },
        "note": "precision = matched predicted boundary / predicted boundary; ICAM's code prints "
                "this ratio as 'recall' and the ground-truth ratio as 'precision' (F unaffected)",
    }
