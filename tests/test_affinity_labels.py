"""Affinity-label rules on hand-made cases, with the real CRF, and through the process pool."""

import numpy as np
import pytest
from PIL import Image

from wsss.affinity.labels import affinity_labels, combine_confident, label_file_job, rule_params
from wsss.data import build_dataset
from wsss.data.io import load_mask, save_cam, save_gray_png, save_index_png
from wsss.errors import ConfigError, DataError
from wsss.parallel import parallel_map

NO_CRF = {"preset": "irn", "t": 0}  # zero mean-field iterations: the CRF returns its unary's argmax

IMAGE = np.full((2, 4, 3), 128, np.uint8)
CAMS = np.array([[[0.9, 0.2, 0.04, 0.1], [0.5, 0.03, 0.2, 0.0]],
                 [[0.1, 0.6, 0.01, 0.35], [0.2, 0.02, 0.25, 0.04]]], np.float32)
KEYS = [2, 5]  # mask values 3 and 6


def test_combine_confident():
    fg = np.array([[3, 0, 0], [6, 0, 0]])
    bg = np.array([[0, 0, 1], [0, 6, 0]])
    assert combine_confident(fg, bg).tolist() == [[3, 0, 255], [6, 255, 0]]


def test_threshold_rule_hand_made():
    out = affinity_labels("threshold", IMAGE, CAMS, KEYS, fg_threshold=0.3, bg_threshold=0.05, crf=NO_CRF)
    assert out.dtype == np.uint8
    assert out.tolist() == [[3, 6, 0, 6], [3, 0, 255, 0]]


def test_saliency_rule_hand_made():
    sal = np.array([[0.8, 0.9, 0.05, 0.5], [0.7, 0.2, 0.6, 0.0]], np.float32)
    out = affinity_labels("saliency", IMAGE, CAMS, KEYS, sal, fg_threshold=0.4, bg_threshold=0.1, crf=NO_CRF)
    assert out.tolist() == [[3, 6, 0, 255], [3, 255, 255, 0]]


def test_alpha_rule_hand_made():
    out = affinity_labels("alpha", IMAGE, CAMS, KEYS, low_alpha=4, high_alpha=32, crf={"preset": "psa", "t": 0})
    assert out.tolist() == [[3, 6, 0, 6], [3, 0, 255, 0]]


def square_scene(size=40):
    img = np.full((size, size, 3), (60, 140, 60), np.uint8)
    img[10:30, 10:30] = (220, 200, 40)
    obj = np.zeros((size, size), bool)
    obj[10:30, 10:30] = True
    yy, xx = np.mgrid[:size, :size]
    cam = np.exp(-((yy - 22) ** 2 + (xx - 22) ** 2) / (2 * 8.0 ** 2)).astype(np.float32)[None]  # off-centre blob
    return img, obj, cam


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_crf_snaps_labels_to_the_object():
    img, obj, cam = square_scene()
    out = affinity_labels("threshold", img, cam, [0], fg_threshold=0.3, bg_threshold=0.05)
    raw = cam[0] > 0.3
    assert iou(out == 1, obj) > iou(raw, obj) + 0.1
    assert (out[obj] != 0).all()  # no object pixel is labelled confident background


def test_rule_errors_and_config():
    with pytest.raises(DataError):
        affinity_labels("saliency", IMAGE, CAMS, KEYS, None)
    with pytest.raises(DataError):
        affinity_labels("threshold", IMAGE[:1], CAMS, KEYS)
    with pytest.raises(ConfigError):
        rule_params({"rule": "nope"})
    with pytest.raises(ConfigError):
        rule_params({"rule": "alpha", "fg_threshold": 0.3})
    name, params = rule_params({"rule": "saliency", "crf": {"t": 3}})
    assert name == "saliency" and params["crf"] == {"preset": "irn", "t": 3, "gt_prob": 0.7}
    assert params["fg_threshold"] == 0.4


def make_root(tmp_path, n=4, size=40):
    """A tiny VOC-layout root with CAM and saliency files for every image."""
    root = tmp_path / "data"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "class_names.txt").write_text("a\nb\n")
    ids = [f"im{i}" for i in range(n)]
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    img, obj, cam = square_scene(size)
    for i, image_id in enumerate(ids):
        shifted = np.roll(img, 2 * i, axis=1)
        Image.fromarray(shifted).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        gt = np.roll(obj, 2 * i, axis=1).astype(np.uint8) * (1 + i % 2)
        save_index_png(root / "SegmentationClass" / f"{image_id}.png", gt)
        c = np.roll(cam, 2 * i, axis=2)
        save_cam(tmp_path / "cams" / f"{image_id}.npz", [i % 2], c[:, ::4, ::4], c)
        save_gray_png(tmp_path / "sal" / f"{image_id}.png", (np.roll(obj, 2 * i, axis=1) * 230 + 10).astype(np.uint8))
    return root, ids


def test_pool_writes_the_same_labels_as_one_process(tmp_path):
    root, ids = make_root(tmp_path)
    ds = build_dataset("synthetic", root, "train")
    name, params = rule_params({"rule": "saliency"})
    outs = {}
    for workers in (1, 2):
        state = {"dataset": ds, "cam_dir": tmp_path / "cams", "sal_dir": tmp_path / "sal",
                 "out_dir": tmp_path / f"out{workers}", "rule": name, "params": params, "overwrite": False}
        res = list(parallel_map(label_file_job, range(len(ids)), workers=workers, state=state))
        assert [r[0] for r in res] == ids and all(r[1] is not None for r in res)
        outs[workers] = [load_mask(tmp_path / f"out{workers}" / f"{i}.png") for i in ids]
        again = list(parallel_map(label_file_job, range(len(ids)), workers=1, state=state))
        assert all(r[1] is None for r in again)  # finished files are skipped
    for a, b in zip(outs[1], outs[2]):
        assert np.array_equal(a, b)
    assert set(np.unique(outs[1][1])) <= {0, 2, 255} and (outs[1][1] == 2).any()
