"""Binary fg/bg saliency mIoU (evaluate --mode saliency) on hand-computed cases and a tiny split."""

import json

import numpy as np
import pytest

from wsss.data import build_dataset
from wsss.data.io import save_gray_png
from wsss.data.synthetic import generate
from wsss.metrics.saliency import confusion_at, foreground_values, saliency_histogram, summarize_saliency

GT = np.array([[0, 1, 2], [255, 0, 1]], np.uint8)
SAL = np.array([[0, 200, 100], [255, 128, 10]], np.uint8)


def test_threshold_is_strict():
    fg = foreground_values(0.2)
    assert not fg[51] and fg[52]  # 51 / 255 == 0.2: a tie goes to background
    assert not foreground_values(1.0).any() and foreground_values(0.0)[1:].all() and not foreground_values(0.0)[0]


def test_histogram_ignores_255_and_merges_classes():
    hist = saliency_histogram(GT, SAL)
    assert hist.shape == (2, 256) and hist.sum() == 5  # the 255 pixel is ignored
    assert hist[0, 0] == 1 and hist[0, 128] == 1  # background pixels
    assert hist[1, 200] == 1 and hist[1, 100] == 1 and hist[1, 10] == 1  # classes 1 and 2 are foreground


def test_binary_miou_by_hand():
    hist = saliency_histogram(GT, SAL)
    # t = 0.5: fg where v > 127.5 -> TP_fg 1, FN_fg 2, FP_fg 1; bg: TP 1, FP 2, FN 1 -> IoU 1/4 each
    np.testing.assert_array_equal(confusion_at(hist, 0.5), [[1, 1, 0], [2, 1, 0]])
    # t = 0.05: fg where v > 12.75 -> fg IoU 2/4, bg IoU 1/3
    result = summarize_saliency(hist, [0.05, 0.5])
    assert result["threshold"] == 0.05
    assert result["miou"] == pytest.approx((50 + 100 / 3) / 2)
    assert [p["miou"] for p in result["curve"]] == pytest.approx([(50 + 100 / 3) / 2, 25.0])
    assert result["per_class"]["foreground"]["iou"] == pytest.approx(50.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    generate(root, seed=0, n_train=2, n_val=3, size=40, progress=False)
    return root


def _write(ds, out, fn):
    for i in ds.ids:
        save_gray_png(out / f"{i}.png", fn(ds.load_gt_mask(i)))


def test_evaluate_tool_on_a_folder_of_pngs(tiny, tmp_path, capsys):
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("evaluate_tool", Path(__file__).parents[1] / "tools/evaluate.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    ds = build_dataset("synthetic", tiny, "val")
    perfect, allfg = tmp_path / "perfect", tmp_path / "allfg"
    _write(ds, perfect, lambda m: np.where((m > 0) & (m < 255), 255, 0))
    _write(ds, allfg, lambda m: np.full(m.shape, 255))
    out = tmp_path / "eval.json"
    assert tool.main(["--data", str(tiny), "--split", "val", "--pred", str(perfect), "--mode", "saliency",
                      "--out", str(out), "--workers", "1"]) == 0
    res = json.loads(out.read_text())
    assert res["mode"] == "saliency" and res["miou"] == pytest.approx(100.0) and res["num_images"] == 3
    assert (tmp_path / "eval.config.yaml").is_file()
    tool.main(["--data", str(tiny), "--split", "val", "--pred", str(allfg), "--mode", "saliency", "--workers", "1"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    # all foreground: background IoU 0, foreground IoU = share of foreground among valid pixels
    masks = [ds.load_gt_mask(i) for i in ds.ids]
    fg = sum(((m > 0) & (m < 255)).sum() for m in masks) / sum((m < 255).sum() for m in masks)
    assert last == f"mIoU: {100 * fg / 2:.2f}"
    (perfect / f"{ds.ids[0]}.png").unlink()
    with pytest.raises(SystemExit) as e:
        from wsss.cli import run_main
        sys.argv = ["evaluate.py"]
        run_main(lambda: tool.main(["--data", str(tiny), "--split", "val", "--pred", str(perfect),
                                    "--mode", "saliency", "--workers", "1"]))
    assert e.value.code == 2
    assert "1 of 3 saliency PNGs missing" in capsys.readouterr().err
