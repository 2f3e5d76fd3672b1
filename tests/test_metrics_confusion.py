"""Confusion matrix and mIoU: hand-computed cases, an independent set-based IoU, ignore rules."""

import numpy as np
import pytest

from wsss.metrics import class_scores, confusion_matrix, miou, summarize_confusion
from wsss.metrics.confusion import histogram

# gt / pred of a 3-class problem (255 = ignore in gt, "no prediction" in pred)
GT = np.array([[0, 0, 1],
               [0, 1, 1],
               [255, 2, 2]], np.uint8)
PRED = np.array([[0, 1, 1],
                 [0, 1, 2],
                 [2, 2, 255]], np.uint8)


def test_hand_computed_3x3():
    # valid (gt, pred) pairs: (0,0) (0,1) (1,1) / (0,0) (1,1) (1,2) / [ignored] (2,2) (2,255)
    conf = confusion_matrix(GT, PRED, 3)
    expected = np.array([[2, 1, 0, 0],   # gt 0: pred 0 twice, pred 1 once
                         [0, 2, 1, 0],   # gt 1: pred 1 twice, pred 2 once
                         [0, 0, 1, 1]])  # gt 2: pred 2 once, pred 255 once ("other" column)
    np.testing.assert_array_equal(conf, expected)
    s = class_scores(conf)
    # class 0: TP 2, T 3, P 2 -> IoU 2/3; class 1: TP 2, T 3, P 3 -> 2/4;
    # class 2: TP 1, T 2 (the 255 prediction is a miss), P 2 (the pred 2 on ignored gt is not counted) -> 1/3
    np.testing.assert_allclose(s["iou"], [200 / 3, 50, 100 / 3])
    np.testing.assert_allclose(s["precision"], [100, 200 / 3, 50])
    np.testing.assert_allclose(s["recall"], [200 / 3, 200 / 3, 50])
    # class 1: FP = P - TP = 1, FN = T - TP = 1, union 4
    np.testing.assert_allclose(s["fp"], [0, 25, 100 / 3])
    np.testing.assert_allclose(s["fn"], [100 / 3, 25, 100 / 3])
    np.testing.assert_allclose(s["fp"] + s["fn"] + s["iou"], 100)
    assert miou(conf) == pytest.approx(50.0)  # (2/3 + 1/2 + 1/3) / 3


def _set_iou(gts, preds, k):
    """Independent IoU: python sets of (image, pixel) positions per class."""
    ious = []
    for c in range(k):
        g, p = set(), set()
        for n, (gt, pred) in enumerate(zip(gts, preds)):
            for i, (a, b) in enumerate(zip(gt.ravel().tolist(), pred.ravel().tolist())):
                if a == 255:
                    continue
                if a == c:
                    g.add((n, i))
                if b == c:
                    p.add((n, i))
        union = g | p
        ious.append(100 * len(g & p) / len(union) if union else 0.0)
    return ious


def test_matches_set_based_iou_on_random_masks():
    rng = np.random.default_rng(0)
    k = 5
    gts, preds = [], []
    for _ in range(4):
        shape = tuple(rng.integers(5, 30, 2))
        gt = rng.integers(0, k, shape).astype(np.uint8)
        gt[rng.random(shape) < 0.1] = 255
        pred = rng.integers(0, k, shape).astype(np.uint8)
        pred[rng.random(shape) < 0.05] = 255
        gts.append(gt)
        preds.append(pred)
    conf = sum(confusion_matrix(g, p, k) for g, p in zip(gts, preds))
    np.testing.assert_allclose(class_scores(conf)["iou"], _set_iou(gts, preds, k))
    # split-wide accumulation is NOT the mean of per-image mIoUs
    per_image = np.mean([miou(confusion_matrix(g, p, k)) for g, p in zip(gts, preds)])
    assert miou(conf) != pytest.approx(per_image)


def test_ignored_gt_never_counts_and_bad_values_raise():
    gt = np.full((4, 4), 255, np.uint8)
    gt[0, 0] = 1
    pred = np.full((4, 4), 2, np.uint8)
    conf = confusion_matrix(gt, pred, 3)
    assert conf.sum() == 1 and conf[1, 2] == 1
    with pytest.raises(ValueError, match="neither a class"):
        confusion_matrix(np.full((2, 2), 7, np.uint8), np.zeros((2, 2), np.uint8), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8), 3)


def test_predictions_out_of_range_are_misses_not_false_positives():
    gt = np.array([[1, 1]], np.uint8)
    pred = np.array([[1, 9]], np.uint8)  # 9 is no class of a 3-class problem
    s = class_scores(confusion_matrix(gt, pred, 3))
    assert s["iou"][1] == pytest.approx(50.0) and s["precision"][1] == pytest.approx(100.0)


def test_non_uint8_inputs_and_histogram_equivalence():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 4, (9, 11))
    pred = rng.integers(0, 4, (9, 11)).astype(np.int32)
    np.testing.assert_array_equal(confusion_matrix(gt, pred, 4),
                                  confusion_matrix(gt.astype(np.uint8), pred.astype(np.uint8), 4))
    idx = rng.integers(0, 3000, (40, 70)).astype(np.uint16)
    np.testing.assert_array_equal(histogram(idx, 3000), np.bincount(idx.ravel(), minlength=3000))


def test_summary_absent_class_scores_zero_and_counts():
    gt = np.array([[0, 1]], np.uint8)
    conf = confusion_matrix(gt, gt, 3)  # class 2 absent from gt and prediction
    r = summarize_confusion(conf, ["background", "a", "b"])
    assert r["per_class"]["b"]["iou"] == 0.0 and r["absent_classes"] == ["b"]
    assert r["miou"] == pytest.approx(200 / 3)  # (100 + 100 + 0) / 3, as the references compute
    assert r["miou_foreground"] == pytest.approx(50.0)
