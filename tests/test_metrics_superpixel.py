"""Superpixel metrics (boundary recall / precision, ASA) and hard superpixels from associations."""

import numpy as np
import torch

from wsss.metrics.superpixel import asa_counts, boundary_counts, label_boundaries
from wsss.superpixel.ops import hard_superpixels


def test_label_boundaries_east_and_south():
    lab = np.array([[0, 0, 1],
                    [0, 0, 1],
                    [2, 2, 2]])
    expect = np.array([[0, 1, 0],
                       [1, 1, 1],
                       [0, 0, 0]], bool)
    assert np.array_equal(label_boundaries(lab), expect)


def test_boundary_recall_tolerance():
    gt = np.zeros((6, 10), np.uint8)
    gt[:, 4:] = 1            # ground-truth boundary pixels: column 3 (6 pixels)
    sp = np.zeros((6, 10), np.int64)
    sp[:, 6:] = 1            # superpixel boundary pixels: column 5, two columns away
    assert boundary_counts(sp, gt, tolerance=2) == (6, 6, 6, 6)
    assert boundary_counts(sp, gt, tolerance=1) == (0, 6, 0, 6)
    sp[3:, :] += 2           # a horizontal superpixel boundary (row 2): extra sp boundary pixels, unmatched
    hit, total, sp_hit, sp_total = boundary_counts(sp, gt, tolerance=2)
    assert (hit, total) == (6, 6) and sp_total == 6 + 10 - 1 and sp_hit < sp_total


def test_achievable_segmentation_accuracy():
    gt = np.array([[0, 0, 1, 1],
                   [0, 255, 1, 1]], np.uint8)
    sp = np.array([[0, 0, 0, 1],
                   [0, 0, 1, 1]])
    # superpixel 0 covers gt {0, 0, 1, 0} (255 ignored) -> 3 correct; superpixel 1 covers {1, 1, 1} -> 3
    assert asa_counts(sp, gt) == (6, 7)
    assert asa_counts(np.arange(8).reshape(2, 4), gt) == (7, 7)


def test_hard_superpixels_follow_the_strongest_association():
    cell = 2
    q = torch.zeros(1, 9, 4, 6)
    q[:, 4] = 1.0               # every pixel in its own cell ...
    q[0, :, 0, 0] = 0.0
    q[0, 0, 0, 0] = 1.0         # ... except (0, 0) pointing to the top-left: outside -> own cell
    q[0, :, 2, 3] = 0.0
    q[0, 2, 2, 3] = 1.0         # (2, 3) in cell (1, 1) points to the top-right cell (0, 2)
    ids = hard_superpixels(q, cell)[0]
    grid = torch.arange(6).reshape(2, 3).repeat_interleave(2, 0).repeat_interleave(2, 1)
    expect = grid.clone()
    expect[2, 3] = 2
    assert torch.equal(ids, expect)
