"""Pseudo masks: background padding, argmax, key mapping, ignore."""

import numpy as np
import pytest

from wsss.errors import DataError
from wsss.postprocess.pseudo import argmax_mask, foreground_keys, index_to_mask, pad_background, set_ignore


def test_constant_background_argmax_and_keys():
    scores = np.array([[[0.9, 0.2], [0.1, 0.5]],      # class 4
                       [[0.3, 0.6], [0.25, 0.4]]])    # class 11
    mask = argmax_mask(scores, keys=[4, 11], threshold=0.35)
    assert mask.dtype == np.uint8
    assert mask.tolist() == [[5, 12], [0, 5]]


def test_power_background_is_psa_formula():
    scores = np.array([[[0.5, 0.9]], [[0.2, 0.1]]], np.float32)
    padded = pad_background(scores, alpha=2)
    assert np.allclose(padded[0], [[0.25, 0.01]])
    assert argmax_mask(scores, [0, 1], alpha=2).tolist() == [[1, 1]]
    assert argmax_mask(scores, [0, 1], alpha=0.5).tolist() == [[0, 1]]  # (1-0.5)^0.5 = 0.71 > 0.5


def test_no_class_image_is_background():
    assert (argmax_mask(np.zeros((0, 3, 4)), [], threshold=0.3) == 0).all()
    assert (argmax_mask(np.zeros((0, 3, 4)), [], alpha=4) == 0).all()


def test_foreground_keys_accepts_pnoc_npy_keys():
    assert foreground_keys([3, 7], 2).tolist() == [3, 7]
    assert foreground_keys([0, 4, 8], 2).tolist() == [3, 7]  # P-NOC: [0, c + 1, ...]
    with pytest.raises(DataError):
        foreground_keys([1, 2, 3], 2)


def test_index_to_mask_and_ignore():
    idx = np.array([[0, 1], [2, 1]])
    assert index_to_mask(idx, [6, 0]).tolist() == [[0, 7], [1, 7]]
    out = set_ignore(np.array([[1, 2]], np.uint8), np.array([[True, False]]))
    assert out.tolist() == [[255, 2]]
    with pytest.raises(ValueError):
        pad_background(np.zeros((1, 2, 2)), threshold=0.3, alpha=2)
