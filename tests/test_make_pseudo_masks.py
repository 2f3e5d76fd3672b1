"""tools/make_pseudo_masks.py: score files -> pseudo masks at a background threshold (+ label CRF)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.data.io import load_mask, save_cam, save_index_png
from wsss.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import make_pseudo_masks  # noqa: E402


@pytest.fixture
def tree(tmp_path):
    """A 2-image VOC-layout dataset and hand-made score files (classes 1 and 3 of 4)."""
    root = tmp_path / "data"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "class_names.txt").write_text("a\nb\nc\nd\n")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("x0\nx1\n")
    for i in ("x0", "x1"):
        Image.fromarray(np.full((4, 6, 3), 128, np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
        save_index_png(root / "SegmentationClass" / f"{i}.png", np.zeros((4, 6), np.uint8))
    s = np.zeros((2, 4, 6), np.float32)
    s[0, :, :3] = 0.8   # class 1 strong on the left half
    s[1, :2, :] = 0.6   # class 3 on the top rows, below class 1 where they overlap
    s[1, 3, 5] = 0.25   # below every threshold used here
    save_cam(tmp_path / "scores" / "x0.npz", [1, 3], s[:, ::4, ::4], s)
    save_cam(tmp_path / "scores" / "x1.npz", np.zeros(0, np.int64), np.zeros((0, 1, 2)), np.zeros((0, 4, 6)))
    return tmp_path, root


def run(tmp, root, *extra):
    return make_pseudo_masks.main(["--data", str(root), "--split", "train", "--scores", str(tmp / "scores"),
                                   "--out", str(tmp / "out"), *extra])


def test_known_masks_and_resume(tree, capsys):
    tmp, root = tree
    assert run(tmp, root, "--threshold", "0.5") == 0
    want = np.zeros((4, 6), np.uint8)
    want[:2, 3:] = 4    # class 3 (mask value 3 + 1) where class 1 is absent
    want[:, :3] = 2     # class 1 (value 2) wins the left half, 0.8 > 0.6
    assert np.array_equal(load_mask(tmp / "out" / "x0.png"), want)
    assert np.array_equal(load_mask(tmp / "out" / "x1.png"), np.zeros((4, 6), np.uint8))  # no class: background
    out = capsys.readouterr().out
    assert "2 masks, 0 skipped" in out and "bg 0.5" in out
    assert (tmp / "out" / "config.yaml").is_file()
    # a threshold above class 3's score turns its region into background; reruns skip finished masks
    assert run(tmp, root, "--threshold", "0.7") == 0
    assert "0 masks, 2 skipped" in capsys.readouterr().out
    run(tmp, root, "--threshold", "0.7", "--overwrite")
    want[:2, 3:] = 0
    assert np.array_equal(load_mask(tmp / "out" / "x0.png"), want)


def test_crf_pool_equals_one_process(tree):
    tmp, root = tree
    run(tmp, root, "--threshold", "0.5", "--crf", "pnoc_rw", "--out", str(tmp / "a"))
    run(tmp, root, "--threshold", "0.5", "--crf", "pnoc_rw", "--workers", "2", "--out", str(tmp / "b"))
    for i in ("x0", "x1"):
        assert np.array_equal(load_mask(tmp / "a" / f"{i}.png"), load_mask(tmp / "b" / f"{i}.png"))


def test_bad_input(tree):
    tmp, root = tree
    with pytest.raises(ConfigError, match="outside"):
        run(tmp, root, "--threshold", "3")
    with pytest.raises(ConfigError, match="score folder not found"):
        make_pseudo_masks.main(["--data", str(root), "--split", "train", "--scores", str(tmp / "nope"),
                                "--out", str(tmp / "o"), "--threshold", "0.3"])
    r = subprocess.run([sys.executable, str(ROOT / "tools/make_pseudo_masks.py"), "--data", str(root), "--split",
                        "train", "--scores", str(tmp / "scores"), "--out", str(tmp / "o"), "--threshold", "0.3",
                        "--crf", "nonsense"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "nonsense" in r.stderr
    assert not (tmp / "o").exists()  # nothing half-written
