"""Contour F-score (ICAM definition): boundary rule, tolerance, known shifts, summation rules."""

import numpy as np
import pytest
from skimage.morphology import disk as skimage_disk

from wsss.metrics import boundary_map, contour_counts, contour_scores, summarize_contour, tolerance_pixels
from wsss.metrics.contour import disk


def boundary_by_rule(mask):
    """Pixel-by-pixel statement of the rule: differs from E, S or SE (last row: E only, last col: S only)."""
    h, w = mask.shape
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                nbrs = [(y, x + 1)]
            elif x == w - 1:
                nbrs = [(y + 1, x)]
            else:
                nbrs = [(y, x + 1), (y + 1, x), (y + 1, x + 1)]
            out[y, x] = any(mask[y, x] != mask[q] for q in nbrs)
    return out


def brute_counts(gt_b, pred_b, r):
    """Matches by explicit Euclidean distance between boundary pixels (no dilation)."""
    g = np.argwhere(gt_b)
    p = np.argwhere(pred_b)

    def matched(a, b):
        if len(a) == 0 or len(b) == 0:
            return 0
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return int((d2.min(axis=1) <= r * r).sum())

    return [matched(p, g), matched(g, p), len(p), len(g)]


def test_boundary_map_follows_the_rule():
    rng = np.random.default_rng(0)
    for _ in range(5):
        m = rng.random((9, 12)) < 0.4
        np.testing.assert_array_equal(boundary_map(m), boundary_by_rule(m))
    # a full-image mask has no boundary (image edges are not contours)
    assert not boundary_map(np.ones((5, 6), bool)).any()


def test_disk_and_tolerance_match_the_reference_choices():
    for r in range(0, 12):
        np.testing.assert_array_equal(disk(r), skimage_disk(r))
    assert tolerance_pixels((375, 500)) == 5  # ceil(0.008 * 625)
    for shape in [(281, 500), (500, 333), (17, 23), (1000, 1)]:
        assert tolerance_pixels(shape) == int(np.ceil(0.008 * np.linalg.norm(shape)))
    assert tolerance_pixels((100, 100), bound_th=3) == 3


def square(shape, y0, x0, n, value=1):
    m = np.zeros(shape, np.uint8)
    m[y0:y0 + n, x0:x0 + n] = value
    return m


@pytest.mark.parametrize("r", [0, 1, 2, 3, 4])
def test_square_shifted_by_k(r):
    # A 20x20 square shifted right by k = 3 pixels. Its boundary (4n = 80 pixels) is the row
    # above it, the column left of it, and its own last row and column. Counting, for r < k,
    # boundary pixels within r of the other boundary (both directions give the same total):
    # top rows overlap n-k+1 plus r past the end; bottom rows n-k plus r; the pred left
    # column meets the gt top row within r rows (r) and the gt bottom row (r+1); the pred
    # right column is k > r away from everything: 2n - 2k + 4r + 2 matched of 4n.
    n, k = 20, 3
    gt = square((64, 64), 20, 20, n)
    pred = square((64, 64), 20, 20 + k, n)
    counts = contour_counts(gt, pred, 2, bound_th=r) if r else contour_counts(gt, pred, 2, bound_th=0.0)
    p, rec, f = contour_scores(counts)
    expected = 1.0 if r >= k else (2 * n - 2 * k + 4 * r + 2) / (4 * n)
    assert counts[0, 2] == counts[0, 3] == 4 * n
    assert p[0] == pytest.approx(expected) and rec[0] == pytest.approx(expected)
    assert f[0] == pytest.approx(expected)


def test_counts_match_brute_force_distances():
    rng = np.random.default_rng(3)
    for _ in range(4):
        gt = np.zeros((30, 41), np.uint8)
        pred = np.zeros_like(gt)
        for m in (gt, pred):
            for _ in range(3):
                y, x = rng.integers(0, 30), rng.integers(0, 41)
                m[y:y + rng.integers(2, 12), x:x + rng.integers(2, 12)] = rng.integers(1, 3)
        gt[rng.random(gt.shape) < 0.02] = 255
        counts = contour_counts(gt, pred, 3)
        r = tolerance_pixels(gt.shape)
        g0 = np.where(gt == 255, 0, gt)
        for c in (1, 2):
            assert list(counts[c - 1]) == brute_counts(boundary_map(g0 == c), boundary_map(pred == c), r)


def test_void_is_background():
    gt = square((40, 40), 10, 10, 12)
    gt_void = gt.copy()
    gt_void[0:5, :] = 255
    pred = square((40, 40), 11, 10, 12)
    np.testing.assert_array_equal(contour_counts(gt_void, pred, 2), contour_counts(gt, pred, 2))


def test_absent_class_scores_one_and_split_wide_summation():
    # class 1 perfect in image A; class 2 only predicted (F 0); class 3 nowhere (F 1, counted)
    a_gt = square((50, 50), 10, 10, 20)
    a_pred = a_gt.copy()
    b_gt = np.zeros((50, 50), np.uint8)
    b_pred = square((50, 50), 5, 5, 10, value=2)
    counts = contour_counts(a_gt, a_pred, 4) + contour_counts(b_gt, b_pred, 4)
    p, r, f = contour_scores(counts)
    np.testing.assert_allclose(f, [1.0, 0.0, 1.0])
    assert (p[1], r[1]) == (0.0, 1.0)  # predicted boundary unmatched; nothing to recall
    s = summarize_contour(counts, ["a", "b", "c"])
    assert s["mean_f"] == pytest.approx(200 / 3) and s["definition"] == "icam"

    # counts are summed before P/R: a 4x larger square dominates, unlike a per-image mean
    big_gt, big_pred = square((200, 200), 50, 50, 80), square((200, 200), 50, 50, 80)
    small_gt, small_pred = square((200, 200), 50, 50, 10), square((200, 200), 50, 80, 10)
    summed = contour_counts(big_gt, big_pred, 2) + contour_counts(small_gt, small_pred, 2)
    f_small = contour_scores(contour_counts(small_gt, small_pred, 2))[2][0]
    f_split = contour_scores(summed)[2][0]
    assert f_small == 0.0  # 30 px apart, tolerance 3
    assert f_split == pytest.approx(320 / 360)  # (320 matched) / (320 + 40) on each side
    with pytest.raises(Exception, match="icam"):
        contour_counts(a_gt, a_pred, 2, definition="nope")
