"""tools/evaluate.py and tools/baselines.py end to end on a tiny VOC-layout tree."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.cli import run_main
from wsss.data.io import save_cam, save_index_png

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_root(tmp_path, masks, class_names=("a", "b")):
    root = tmp_path / "data"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "class_names.txt").write_text("\n".join(class_names) + "\n")
    for image_id, mask in masks.items():
        Image.fromarray(np.zeros(mask.shape + (3,), np.uint8)).save(root / "JPEGImages" / f"{image_id}.jpg")
        save_index_png(root / "SegmentationClass" / f"{image_id}.png", mask)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(masks) + "\n")
    return root


# the hand-computed 3x3 case of test_metrics_confusion.py: mIoU = (2/3 + 1/2 + 1/3) / 3 = 50 %
GT = np.array([[0, 0, 1], [0, 1, 1], [255, 2, 2]], np.uint8)
PRED = np.array([[0, 1, 1], [0, 1, 2], [2, 2, 255]], np.uint8)


def run_tool(tool, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: tool.main(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_png_mode_prints_table_and_final_miou_line(tmp_path, capsys):
    evaluate = load_tool("evaluate")
    root = make_root(tmp_path, {"x": GT})
    save_index_png(tmp_path / "pred" / "x.png", PRED)
    out_json = tmp_path / "eval.json"
    code, out, _ = run_tool(evaluate, ["--data", str(root), "--split", "val", "--pred", str(tmp_path / "pred"),
                                       "--mode", "png", "--out", str(out_json), "--workers", "2"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[-1] == "mIoU: 50.00"
    assert any(line.startswith("protocol: split size") for line in lines)
    result = json.loads(out_json.read_text())
    for key in ("miou", "per_class", "contour_f", "definitions", "split", "num_images", "mode"):
        assert key in result
    assert result["miou"] == pytest.approx(50.0) and result["num_images"] == 1 and result["split"] == "val"
    assert set(result["per_class"]["b"]) == {"iou", "precision", "recall", "fp", "fn"}
    assert result["per_class"]["b"]["iou"] == pytest.approx(100 / 3)
    assert result["contour_f"]["definition"] == "icam"
    assert out_json.with_suffix(".config.yaml").is_file()

    # an existing result is skipped (resume) unless --overwrite, with the same last line
    code, out, _ = run_tool(evaluate, ["--data", str(root), "--split", "val", "--pred", str(tmp_path / "pred"),
                                       "--out", str(out_json)], capsys)
    assert code == 0 and "skipped" in out and out.strip().splitlines()[-1] == "mIoU: 50.00"


def test_cam_mode_sweeps_and_reads_both_cam_formats(tmp_path, capsys):
    evaluate = load_tool("evaluate")
    masks = {}
    for i, cls in enumerate([1, 2, 1]):
        m = np.zeros((12, 16), np.uint8)
        m[3:9, 4:12] = cls
        masks[f"im{i}"] = m
    root = make_root(tmp_path, masks)
    cams = tmp_path / "cams"
    for i, (image_id, m) in enumerate(masks.items()):
        hr = np.where(m > 0, 0.75, 0.25).astype(np.float32)[None]  # exact in fp16; t in [0.25, 0.75) is perfect
        cls = int(m.max())
        if i == 2:  # P-NOC's released format: .npy dict, keys with the background padded, +1
            cams.mkdir(exist_ok=True)
            np.save(cams / f"{image_id}.npy", {"keys": np.array([0, cls]), "hr_cam": hr, "cam": hr})
        else:
            save_cam(cams / f"{image_id}.npz", [cls - 1], hr[:, ::4, ::4], hr)
    out_json = tmp_path / "cam.json"
    code, out, _ = run_tool(evaluate, ["--data", str(root), "--split", "val", "--pred", str(cams), "--mode", "cam",
                                       "--thresholds", "0.1:0.5:0.1", "--out", str(out_json)], capsys)
    assert code == 0, out
    assert out.strip().splitlines()[-1] == "mIoU: 100.00"
    assert "threshold tuned on GT" in out
    result = json.loads(out_json.read_text())
    assert result["threshold"] == pytest.approx(0.3)  # first of the best thresholds
    assert [p["threshold"] for p in result["curve"]] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    # t < 0.25: the whole image is foreground; bg IoU 0, class IoU = 48 / 192 (a: 2 images, b: 1)
    assert result["curve"][0]["miou"] == pytest.approx((0 + 25 + 25) / 3)
    assert result["contour_f"]["mean_f"] == pytest.approx(100.0)


def test_bad_pred_dir_and_missing_files_exit_2(tmp_path, capsys):
    evaluate = load_tool("evaluate")
    root = make_root(tmp_path, {f"im{i}": GT for i in range(4)})
    code, _, err = run_tool(evaluate, ["--data", str(root), "--split", "val", "--pred", str(tmp_path / "nope")],
                            capsys)
    assert code == 2 and "prediction directory not found" in err
    (tmp_path / "cams").mkdir()
    save_cam(tmp_path / "cams" / "im1.npz", [0], np.zeros((1, 1, 1)), np.zeros((1, 3, 3)))
    code, _, err = run_tool(evaluate, ["--data", str(root), "--split", "val", "--pred", str(tmp_path / "cams"),
                                       "--mode", "cam"], capsys)
    assert code == 2 and "3 of 4 CAM files" in err and "im0, im2, im3" in err
    save_index_png(tmp_path / "small" / "im0.png", np.zeros((2, 2), np.uint8))
    for i in range(1, 4):
        save_index_png(tmp_path / "small" / f"im{i}.png", PRED)
    code, _, err = run_tool(evaluate, ["--data", str(root), "--split", "val", "--pred", str(tmp_path / "small"),
                                       "--workers", "3"], capsys)
    assert code == 2 and "im0.png" in err and "2x2" in err


def test_baselines(tmp_path, capsys):
    baselines = load_tool("baselines")
    root = make_root(tmp_path, {"x": np.array([[0, 1], [1, 2]], np.uint8)})
    out_json = tmp_path / "base.json"
    code, out, _ = run_tool(baselines, ["--data", str(root), "--split", "val", "--out", str(out_json)], capsys)
    assert code == 0
    result = json.loads(out_json.read_text())
    assert set(result) == {"all_background", "first_label"}
    # all background: bg IoU 1/4, classes 0 -> 8.33; first label (class 1 everywhere): 2/4 -> 16.67
    assert result["all_background"]["miou"] == pytest.approx(25 / 3)
    assert result["first_label"]["miou"] == pytest.approx(50 / 3)
    assert "all_background mIoU 8.33, first_label mIoU 16.67" in out.strip().splitlines()[-1]
