"""Confusion matrices of label maps, accumulated over a whole split.

Layout of the matrix returned for ``K`` classes (background included): shape ``(K, K + 1)``,
rows = ground-truth class, columns = predicted class, plus one last column ``K`` ("other")
for predicted values that are not a class (``255`` or anything ``>= K``). Ground-truth ``255``
pixels are ignored. This reproduces the PuzzleCAM / P-NOC evaluators, which count a
prediction of 255 on a valid pixel as a miss of the ground-truth class (a false negative)
without charging any class with a false positive.
"""

import functools

import cv2
import numpy as np

IGNORE = 255
# cv2.calcHist returns float32 counts: exact while no bin can exceed 2**24 pixels.
_CALCHIST_MAX_PIXELS = 1 << 24


@functools.lru_cache(maxsize=None)
def lookup_tables(num_classes):
    """uint8 value -> matrix index tables (read-only, cached): ``gt_lut`` already multiplied by
    K + 1 (row K = ignored 255, row K + 1 = invalid values), ``pred_lut`` (column K = "other")."""
    gt_lut = np.full(256, num_classes + 1, dtype=np.uint16)
    gt_lut[:num_classes] = np.arange(num_classes)
    gt_lut[IGNORE] = num_classes
    pred_lut = np.full(256, num_classes, dtype=np.uint16)
    pred_lut[:num_classes] = np.arange(num_classes)
    gt_lut *= num_classes + 1
    gt_lut.flags.writeable = pred_lut.flags.writeable = False
    return gt_lut, pred_lut


def as_uint8(a, what):
    """Integer label map as uint8 (values must lie in 0..255); ValueError naming ``what`` otherwise."""
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind not in "iub":
        raise ValueError(f"{what} must hold integer labels, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 255):
        raise ValueError(f"{what} holds values outside 0..255")
    return a.astype(np.uint8)


def histogram(index, length):
    """``np.bincount(index.ravel(), minlength=length)`` for a uint16 array, several times faster."""
    index = np.ascontiguousarray(index, dtype=np.uint16)
    if index.size >= _CALCHIST_MAX_PIXELS or index.ndim != 2:
        return np.bincount(index.ravel(), minlength=length)
    # uniform bins of width 1 over [0, length): bin == value exactly
    hist = cv2.calcHist([index], [0], None, [length], [0, length])
    return hist.ravel().astype(np.int64)


def confusion_matrix(gt, pred, num_classes):
    """``(K, K + 1)`` int64 counts of (ground truth, prediction) pairs for one image.

    ``gt`` and ``pred`` are integer label maps of the same shape; ``gt == 255`` is ignored.
    Raises ``ValueError`` when shapes differ or the ground truth holds a value that is neither
    a class (``0..K-1``) nor 255.
    """
    if not 1 <= num_classes <= 254:
        raise ValueError(f"num_classes must be in 1..254, got {num_classes}")
    gt = as_uint8(gt, "ground truth")
    pred = as_uint8(pred, "prediction")
    if gt.shape != pred.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    gt_lut, pred_lut = lookup_tables(num_classes)
    if gt.ndim != 2:
        raise ValueError(f"label maps must be 2-D, got shape {gt.shape}")
    # cv2.LUT / cv2.add are ~5x faster than numpy fancy indexing on uint8 maps
    index = cv2.add(cv2.LUT(np.ascontiguousarray(gt), gt_lut), cv2.LUT(np.ascontiguousarray(pred), pred_lut))
    k1 = num_classes + 1
    counts = histogram(index, (num_classes + 2) * k1).reshape(num_classes + 2, k1)
    if counts[num_classes + 1].any():
        bad = sorted(set(np.unique(gt).tolist()) - set(range(num_classes)) - {IGNORE})
        raise ValueError(f"ground truth holds values {bad} that are neither a class "
                         f"(0..{num_classes - 1}) nor {IGNORE}")
    return counts[:num_classes]
