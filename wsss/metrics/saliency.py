"""Binary foreground/background mIoU of saliency maps (``tools/evaluate.py --mode saliency``).

As P-NOC's saliency evaluator: ground truth foreground = any class (1..C), background = 0,
255 ignored; a saliency PNG (0..255) predicts foreground where ``value / 255 > t`` (argmax
against a background channel padded at ``t``: ties go to background); mIoU = mean of the
background and foreground IoUs of the confusion matrix summed over the split. The threshold is
swept (default 0.05..0.80) and the best one reported with the curve; 0/255 masks score the
same at every threshold. Images whose ground truth holds no foreground pixel are skipped, as
the reference skips images without labels. Predictions: any folder of ``<id>.png``.

See docs/methods/evaluation.md.
"""

import numpy as np

from .cam_eval import DEFAULT_THRESHOLDS, parse_thresholds
from .confusion import histogram
from .evaluator import MODES, accumulate, check_predictions, png_path, sweep_result

CLASS_NAMES = ["background", "foreground"]
IGNORE = 255


def saliency_histogram(gt, sal):
    """(2, 256) counts of saliency values over ground-truth background (row 0) and foreground
    (row 1) pixels; ``gt`` 255 ignored."""
    gt = np.asarray(gt)
    sal = np.asarray(sal, dtype=np.uint8)
    if gt.shape != sal.shape:
        raise ValueError(f"saliency map shape {sal.shape} differs from ground-truth shape {gt.shape}")
    group = np.where(gt == IGNORE, 2, np.where(gt == 0, 0, 1)).astype(np.uint16)
    return histogram(group * 256 + sal, 3 * 256).reshape(3, 256)[:2]


def foreground_values(threshold):
    """Boolean (256,): which saliency values ``v`` count as foreground at ``threshold`` (``v / 255 > t``)."""
    return np.arange(256, dtype=np.float64) / 255.0 > threshold


def confusion_at(hist, threshold):
    """(2, 3) confusion matrix (rows gt bg/fg, columns predicted bg/fg/other) from a histogram."""
    fg = foreground_values(threshold)
    conf = np.zeros((2, 3), np.int64)
    conf[:, 1] = hist[:, fg].sum(1)
    conf[:, 0] = hist[:, ~fg].sum(1)
    return conf


def summarize_saliency(hist, thresholds):
    """Report dict at the best threshold (first best on ties) with the whole curve."""
    return sweep_result([confusion_at(hist, t) for t in thresholds], thresholds, CLASS_NAMES)


@MODES.register("saliency")
def evaluate_saliency(job):
    """Saliency PNGs ``<pred_dir>/<id>.png`` (0..255): binary fg/bg mIoU, threshold sweep."""
    from ..saliency.datasets import load_saliency

    ids = job.gt.ids
    check_predictions(ids, job.pred_dir, png_path, "saliency PNGs",
                      "run tools/infer_saliency.py for this split, or point --pred to a folder of <id>.png maps")
    thresholds = sorted(job.thresholds) or parse_thresholds(DEFAULT_THRESHOLDS)

    def one(image_id):
        gt = job.gt.load(image_id)
        path = png_path(job.pred_dir, image_id)
        sal = load_saliency(path, shape=gt.shape, of="the ground truth")
        hist = saliency_histogram(gt, sal)
        used = bool(hist[1].sum() > 0)
        return {"hist": hist * used, "used": np.int64(used)}

    totals = accumulate(one, ids, job.workers, "evaluate saliency", job.progress)
    result = summarize_saliency(totals["hist"], thresholds)
    result["contour_f"] = None
    result["skipped_without_foreground"] = int(len(ids) - totals["used"])
    return result
