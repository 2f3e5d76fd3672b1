"""Dense CRF wrapper and its process pool on toy images."""

import numpy as np
import pytest

from wsss.errors import DataError
from wsss.parallel import parallel_map
from wsss.postprocess.crf import CRF_PRESETS, CRFParams, crf_from_labels, crf_from_probs, crf_params


def toy(h=24, w=32, seed=0):
    """Left half red, right half blue (mild noise); the clean 2-class segmentation."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float64)
    img[:, : w // 2] = (200, 40, 40)
    img[:, w // 2:] = (40, 40, 200)
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    clean = np.zeros((h, w), np.int64)
    clean[:, w // 2:] = 1
    return img, clean


def test_label_crf_removes_noise_along_image_edges():
    img, clean = toy()
    rng = np.random.default_rng(1)
    noisy = clean.copy()
    flip = rng.random(clean.shape) < 0.15
    noisy[flip] = 1 - noisy[flip]
    out = crf_from_labels(img, noisy, 2, "irn")
    assert out.shape == clean.shape and out.dtype == np.int64
    assert (out == clean).mean() > 0.99
    assert (noisy == clean).mean() < 0.9


def test_label_crf_with_zero_iterations_returns_the_labels():
    img, clean = toy()
    labels = np.random.default_rng(2).integers(0, 3, clean.shape)
    assert (crf_from_labels(img, labels, 3, crf_params("irn", t=0)) == labels).all()


def test_prob_crf_marginals_and_ambiguity():
    img, clean = toy()
    probs = np.full((2, *clean.shape), 0.5, np.float32)
    probs[0, :, :4] = 0.9   # a confident seed on each side, the rest undecided
    probs[1, :, :4] = 0.1
    probs[0, :, -4:] = 0.1
    probs[1, :, -4:] = 0.9
    q = crf_from_probs(img, probs, "psa")
    assert q.shape == probs.shape and q.dtype == np.float32
    assert np.allclose(q.sum(0), 1, atol=1e-4)
    assert (q.argmax(0) == clean).mean() > 0.95  # the undecided middle follows the colours


def test_presets_hold_the_published_parameters():
    assert CRF_PRESETS.get("irn") == CRFParams(t=10, gauss_sxy=3, gauss_compat=3, bi_sxy=50, bi_srgb=5,
                                               bi_compat=10, gt_prob=0.7)
    assert (CRF_PRESETS.get("psa").bi_sxy, CRF_PRESETS.get("psa").bi_srgb) == (80, 13)
    d = CRF_PRESETS.get("deeplab")
    assert (d.t, d.gauss_sxy, d.gauss_compat, d.bi_sxy, d.bi_srgb, d.bi_compat) == (10, 1, 3, 67, 3, 4)
    assert crf_params("pnoc_rw") == CRFParams(t=1, gt_prob=0.9)
    v1 = CRF_PRESETS.get("deeplabv1")  # ICAM / SEAM lib/utils/DenseCRF.py
    assert (v1.t, v1.gauss_sxy, v1.gauss_compat, v1.bi_sxy, v1.bi_srgb, v1.bi_compat) == (1, 3, 3, 32, 13, 10)
    assert crf_params("irn", t=3, gt_prob=None).t == 3


def test_single_label_and_bad_inputs():
    img, clean = toy()
    assert (crf_from_labels(img, np.zeros_like(clean), 1) == 0).all()
    with pytest.raises(DataError):
        crf_from_labels(img[:10], clean, 2)
    with pytest.raises(DataError):
        crf_from_labels(img.astype(np.float32), clean, 2)
    with pytest.raises(ValueError):
        crf_from_labels(img, clean + 5, 2)


def _crf_job(state, seed):
    img, clean = toy(seed=seed)
    noisy = np.where(np.random.default_rng(seed).random(clean.shape) < 0.2, 1 - clean, clean)
    return crf_from_labels(img, noisy, 2, state)


def test_pool_equals_single_process():
    seeds = list(range(6))
    single = list(parallel_map(_crf_job, seeds, workers=1, state="irn"))
    pooled = list(parallel_map(_crf_job, seeds, workers=2, state="irn", max_pending=3))
    assert len(pooled) == len(seeds)
    for a, b in zip(single, pooled):
        assert np.array_equal(a, b)
