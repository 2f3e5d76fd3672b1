"""Per-class scores and mIoU from a confusion matrix summed over a split.

Definitions (PuzzleCAM / P-NOC evaluators; T = ground-truth pixels of the class, P = pixels
predicted as the class, both on non-ignored pixels):

- IoU = TP / (TP + FP + FN) = TP / (T + P - TP); mIoU = mean over ALL classes, background
  included. A class absent from both ground truth and prediction scores IoU 0 and still counts
  (the references add 1e-10 to the denominator), which matters only on tiny splits.
- precision = TP / P, recall = TP / T (0 when the denominator is 0).
- fp = FP / (TP + FP + FN) and fn = FN / (TP + FP + FN): how the class's union splits into
  over-activation and under-activation (fp + fn = 1 - IoU). The references print the mean of
  fp and fn over the FOREGROUND classes.

Every score is returned in percent.

See docs/methods/evaluation.md.
"""

import numpy as np


def _ratio(num, den):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0) * 100.0


def class_scores(conf):
    """Per-class arrays (percent) from a ``(K, K)`` or ``(K, K + 1)`` confusion matrix.

    Returns a dict of float arrays of length K: ``iou``, ``precision``, ``recall``, ``fp``,
    ``fn``, and int arrays ``tp``, ``gt_pixels`` (T), ``pred_pixels`` (P).
    """
    conf = np.asarray(conf, dtype=np.int64)
    k = conf.shape[0]
    if conf.ndim != 2 or conf.shape[1] not in (k, k + 1):
        raise ValueError(f"confusion matrix must be (K, K) or (K, K+1), got {conf.shape}")
    tp = np.diag(conf[:, :k]).copy()
    t = conf.sum(axis=1)  # the "other" column (prediction 255) is a miss of the gt class
    p = conf[:, :k].sum(axis=0)
    union = t + p - tp
    return {
        "iou": _ratio(tp, union),
        "precision": _ratio(tp, p),
        "recall": _ratio(tp, t),
        "fp": _ratio(p - tp, union),
        "fn": _ratio(t - tp, union),
        "tp": tp,
        "gt_pixels": t,
        "pred_pixels": p,
    }


def summarize_confusion(conf, class_names):
    """Scores for a report: mIoU, foreground means and per-class values keyed by class name.

    ``class_names`` has K entries, background first.
    """
    s = class_scores(conf)
    k = len(s["iou"])
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for a {k}-class confusion matrix")
    per_class = {
        name: {key: float(s[key][i]) for key in ("iou", "precision", "recall", "fp", "fn")}
        for i, name in enumerate(class_names)
    }
    absent = [class_names[i] for i in range(k) if s["gt_pixels"][i] == 0 and s["pred_pixels"][i] == 0]
    fg = slice(1, None) if k > 1 else slice(0, k)
    return {
        "miou": float(s["iou"].mean()),
        "miou_foreground": float(s["iou"][fg].mean()),
        "mean_fp_foreground": float(s["fp"][fg].mean()),
        "mean_fn_foreground": float(s["fn"][fg].mean()),
        "pixel_accuracy": float(_ratio(s["tp"].sum(), s["gt_pixels"].sum())),
        "per_class": per_class,
        "absent_classes": absent,
    }


def miou(conf):
    """mIoU in percent (mean over all classes, background included) of a confusion matrix."""
    return float(class_scores(conf)["iou"].mean())
