"""Evaluation metrics: mIoU from split-wide confusion matrices, CAM threshold sweeps, contour F.

    conf = confusion_matrix(gt, pred, num_classes)          # (K, K+1), summed over a split
    summarize_confusion(conf, ["background", *names])       # mIoU, per-class IoU/P/R/FP/FN (%)
    sweep_confusions(gt, load_cam(path), thresholds, K)     # every threshold in one pass
    contour_counts(gt, pred, K, definition="icam")          # summed, then summarize_contour(...)

``evaluate(EvalJob(...), mode)`` runs a whole split (``tools/evaluate.py``); modes live in
the ``MODES`` registry (``png``, ``cam``; ``saliency`` in saliency.py).
"""

from .cam_eval import DEFAULT_THRESHOLDS, cam_class_ids, cam_to_labels, parse_thresholds, sweep_confusions
from .confusion import confusion_matrix
from .contour import (DEFINITIONS as CONTOUR_DEFINITIONS, boundary_map, contour_counts, contour_scores,
                      summarize_contour, tolerance_pixels)
from .evaluator import MODES, DatasetGT, DirectoryGT, EvalJob, accumulate, evaluate, evaluate_label_maps
from .miou import class_scores, miou, summarize_confusion
from .report import format_curve, format_table, protocol_notes
from . import saliency  # noqa: E402,F401  (registers the "saliency" mode)

__all__ = [
    "DEFAULT_THRESHOLDS", "cam_class_ids", "cam_to_labels", "parse_thresholds", "sweep_confusions",
    "confusion_matrix", "CONTOUR_DEFINITIONS", "boundary_map", "contour_counts", "contour_scores",
    "summarize_contour", "tolerance_pixels", "MODES", "DatasetGT", "DirectoryGT", "EvalJob", "accumulate",
    "evaluate_label_maps", "evaluate", "class_scores", "miou", "summarize_confusion", "format_curve",
    "format_table", "protocol_notes",
]
