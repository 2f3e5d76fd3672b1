"""CAM -> label maps and the one-pass threshold sweep against brute-force argmax."""

import numpy as np
import pytest

from wsss.errors import ConfigError
from wsss.metrics import cam_class_ids, cam_to_labels, confusion_matrix, parse_thresholds, sweep_confusions


def brute_labels(hr_cam, class_ids, t):
    """The references' rule: pad a background channel of value t, argmax (first max wins)."""
    hr_cam = np.asarray(hr_cam, np.float32)
    padded = np.pad(hr_cam, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=t)
    return np.concatenate([[0], class_ids])[np.argmax(padded, axis=0)].astype(np.uint8)


def random_case(rng, k=6, channels=3, shape=(17, 23)):
    gt = rng.integers(0, k, shape).astype(np.uint8)
    gt[rng.random(shape) < 0.1] = 255
    keys = np.sort(rng.choice(k - 1, channels, replace=False))
    hr = rng.random((channels,) + shape).astype(np.float16).astype(np.float32)
    return gt, {"keys": keys, "hr_cam": hr}


def test_sweep_equals_brute_force_including_ties():
    rng = np.random.default_rng(0)
    ts = parse_thresholds("0.05:0.80:0.05")
    for trial in range(5):
        gt, cam = random_case(rng)
        hr = cam["hr_cam"]
        # exact ties with thresholds (background must win them) and between channels
        hr.reshape(hr.shape[0], -1)[:, :16] = np.float32(ts[trial])
        hr[1, :3] = hr[0, :3]
        confs = sweep_confusions(gt, cam, ts, 6)
        assert confs.shape == (len(ts), 6, 7)
        for j, t in enumerate(ts):
            labels = brute_labels(hr, cam["keys"] + 1, t)
            np.testing.assert_array_equal(cam_to_labels(cam, t), labels)
            np.testing.assert_array_equal(confs[j], confusion_matrix(gt, labels, 6))


def test_pnoc_npy_keys_are_recognised():
    rng = np.random.default_rng(1)
    _, cam = random_case(rng)
    ours = cam_class_ids(cam["keys"], 3)
    pnoc = cam_class_ids(np.concatenate([[0], cam["keys"] + 1]), 3)  # P-NOC: bg padded, +1
    np.testing.assert_array_equal(ours, pnoc)
    np.testing.assert_array_equal(ours, cam["keys"] + 1)
    with pytest.raises(ValueError, match="keys"):
        cam_class_ids([1, 2, 3, 4, 5], 3)


def test_no_channels_means_background_and_size_mismatch_raises():
    gt = np.ones((4, 5), np.uint8)
    cam = {"keys": np.zeros(0, np.int64), "hr_cam": np.zeros((0, 4, 5), np.float32)}
    confs = sweep_confusions(gt, cam, [0.1, 0.2], 3)
    assert (confs[:, 1, 0] == 20).all() and confs.sum() == 40
    assert (cam_to_labels(cam, 0.1) == 0).all()
    with pytest.raises(ValueError, match="size"):
        sweep_confusions(np.ones((5, 5), np.uint8), {"keys": [0], "hr_cam": np.zeros((1, 4, 5))}, [0.1], 3)


def test_parse_thresholds():
    ts = parse_thresholds("0.05:0.80:0.05")
    assert len(ts) == 16 and ts[0] == 0.05 and ts[-1] == 0.8  # end included
    assert parse_thresholds("0.3") == [0.3]
    assert parse_thresholds("0.4,0.2") == [0.2, 0.4]
    for bad in ("a:b:c", "0.5:0.1:0.1", "0.1:0.5:0", ""):
        with pytest.raises(ConfigError):
            parse_thresholds(bad)


def test_keys_outside_the_dataset_raise():
    gt = np.zeros((3, 3), np.uint8)
    cam = {"keys": np.array([7]), "hr_cam": np.ones((1, 3, 3), np.float32)}  # class id 8 in a 4-class set
    with pytest.raises(ValueError, match="foreground classes 1..3"):
        sweep_confusions(gt, cam, [0.1], 4)
