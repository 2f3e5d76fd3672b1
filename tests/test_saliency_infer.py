"""Saliency outputs: PNG round trip, thresholding, the 2-label dense CRF, the map datasets."""

import numpy as np
import pytest
from PIL import Image

from wsss.data.io import save_cam, save_gray_png
from wsss.errors import DataError
from wsss.saliency.datasets import hint_from_cam, load_saliency
from wsss.saliency.infer import binarize, to_uint8


def test_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    sal = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    save_gray_png(tmp_path / "a.png", sal)
    back = load_saliency(tmp_path / "a.png")
    assert back.dtype == np.uint8 and np.array_equal(back, sal)
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "L"
    prob = rng.random((5, 7)).astype(np.float32)
    save_gray_png(tmp_path / "b.png", to_uint8(prob))
    assert np.abs(load_saliency(tmp_path / "b.png") / 255.0 - prob).max() <= 0.5 / 255 + 1e-6
    assert list(tmp_path.glob(".*tmp*")) == []  # atomic writes leave no temp files


def test_external_rgb_png_and_bad_files(tmp_path):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.all(load_saliency(tmp_path / "rgb.png") == 200)
    with pytest.raises(DataError, match="not found"):
        load_saliency(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot decode"):
        load_saliency(tmp_path / "bad.png")


def test_binarize_threshold_without_crf():
    act = np.array([[0.1, 0.2, 0.2001, 0.9]], np.float32)
    out = binarize(np.zeros((1, 4, 3), np.uint8), act, threshold=0.2, crf=None)
    assert out.dtype == np.uint8 and out.tolist() == [[0, 0, 255, 255]]  # a tie is background


def toy():
    """Left half dark, right half bright; the object is the right half."""
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20:] = 220
    truth = np.zeros((40, 40), bool)
    truth[:, 20:] = True
    return image, truth


def test_dcrf_removes_only_the_noise():
    image, truth = toy()
    act = truth.astype(np.float32) * 0.8
    noise = np.zeros_like(truth)
    noise[5:8, 5:8] = True     # a false-positive speck on the dark side
    noise[30:33, 30:33] = True  # a hole in the object
    act[noise] = 0.8 - act[noise]
    raw = binarize(image, act, threshold=0.2, crf=None)
    assert np.array_equal(raw > 0, truth ^ noise)
    refined = binarize(image, act, threshold=0.2, crf={"preset": "irn"})
    assert set(np.unique(refined)) <= {0, 255}
    assert np.array_equal(refined > 0, truth)  # both specks fixed, nothing else moved
    assert np.array_equal((refined != raw), noise)


def test_dcrf_keeps_a_correct_map():
    image, truth = toy()
    act = truth.astype(np.float32)
    assert np.array_equal(binarize(image, act, 0.2, "irn") > 0, truth)


def test_hint_is_the_max_over_present_classes(tmp_path):
    hr = np.zeros((2, 4, 5), np.float32)
    hr[0, :, :2] = 0.5
    hr[1, :, 1:] = 0.25
    save_cam(tmp_path / "x.npz", [3, 7], hr[:, ::4, ::4], hr)
    from wsss.data.io import load_cam

    hint = hint_from_cam(load_cam(tmp_path / "x.npz"), (4, 5))
    expected = np.maximum(hr[0], hr[1])
    assert hint.dtype == np.float32 and np.allclose(hint, expected, atol=1e-3)  # fp16 on disk
    empty = {"keys": np.zeros(0, np.int64), "hr_cam": np.zeros((0, 4, 5), np.float32)}
    assert not hint_from_cam(empty, (4, 5)).any()
    with pytest.raises(DataError, match="hr_cam has shape"):
        hint_from_cam(load_cam(tmp_path / "x.npz"), (8, 5), path=tmp_path / "x.npz")


def test_threshold_method_binarizes_a_folder_of_activations(tmp_path):
    """--method threshold == binarize() of the stored 0..255 activation; a non-number threshold is a ConfigError."""
    from wsss.errors import ConfigError
    from wsss.saliency import SALIENCY_METHODS

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    act = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    save_gray_png(tmp_path / "act" / "a.png", act)
    cfg = {"method": {"act_dir": str(tmp_path / "act")}, "infer": {"threshold": 0.5, "crf": None}}
    (out,) = SALIENCY_METHODS.get("threshold")().predictor(cfg)([{"id": "a", "image": image}])
    assert np.array_equal(out, np.where(act / 255.0 > 0.5, 255, 0))
    assert np.array_equal(out, binarize(image, act / 255.0, 0.5, None))
    with pytest.raises(ConfigError, match="infer.threshold"):
        SALIENCY_METHODS.get("threshold")().predictor({**cfg, "infer": {"threshold": "best"}})
    with pytest.raises(DataError, match="not found"):
        SALIENCY_METHODS.get("threshold")().predictor(cfg)([{"id": "b", "image": image}])


def test_threshold_tool_pool_equals_single_process(tmp_path):
    """infer_saliency --method threshold --workers 2 writes the same masks as one process."""
    import importlib.util
    from pathlib import Path

    from wsss.data import build_dataset
    from wsss.data.synthetic import generate

    generate(tmp_path / "data", seed=1, n_train=6, n_val=2, size=32, progress=False)
    ds = build_dataset("synthetic", tmp_path / "data", "train")
    rng = np.random.default_rng(2)
    for i in ds.ids:
        save_gray_png(tmp_path / "act" / f"{i}.png", rng.integers(0, 256, (32, 32), dtype=np.uint8))
    spec = importlib.util.spec_from_file_location(
        "infer_saliency", Path(__file__).resolve().parents[1] / "tools/infer_saliency.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for workers in (1, 2):
        assert tool.main(["--method", "threshold", "--data", str(tmp_path / "data"), "--split", "train",
                          "--out", str(tmp_path / f"w{workers}"), "--workers", str(workers),
                          f"method.act_dir={tmp_path / 'act'}", "infer.threshold=0.5", "infer.crf={preset: irn}"]) == 0
    for i in ds.ids:
        one, two = load_saliency(tmp_path / "w1" / f"{i}.png"), load_saliency(tmp_path / "w2" / f"{i}.png")
        assert np.array_equal(one, two) and set(np.unique(one)) <= {0, 255}


def test_saliency_of_the_wrong_size_names_the_file(tmp_path):
    save_gray_png(tmp_path / "a.png", np.zeros((4, 6), np.uint8))
    assert load_saliency(tmp_path / "a.png", shape=(4, 6)).shape == (4, 6)
    with pytest.raises(DataError, match=r"a\.png: saliency map is 6x4 but the ground truth is 6x5"):
        load_saliency(tmp_path / "a.png", shape=(5, 6), of="the ground truth")
