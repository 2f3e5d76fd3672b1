"""End-to-end: train_seg on synthetic pseudo masks through the engine, selection, infer_seg, evaluation."""

import json

import cv2
import numpy as np
import pytest
import yaml

from wsss.data import build_dataset
from wsss.data.io import load_image, load_mask, save_index_png
from wsss.errors import ConfigError
from wsss.metrics import confusion_matrix, summarize_confusion

import tools.infer_seg as infer_seg
import tools.train_seg as train_seg

# A tiny network (width 8, 32-channel head) that learns the shapes below in ~1 s of CPU.
TINY = ["model.backbone_kwargs.width=8", "model.head.channels=32", "model.head.low_proj=16", "train.batch_size=4",
        "train.num_workers=0", "train.lr=0.01", "augment.resize_long=null", "augment.color_jitter=0",
        "augment.crop=64", "select.holdout=0.2"]


COLOURS = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (50, 70, 210)}


def write_shapes(root, n_train=40, n_val=8, size=64, seed=0):
    """A small VOC-layout set a tiny network can learn in seconds: one or two coloured
    rectangles/ellipses (class = colour) on a noisy grey background."""
    rng = np.random.default_rng(seed)
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "class_names.txt").write_text("\n".join(COLOURS) + "\n")
    ids = {"train": [f"tr{i:03d}" for i in range(n_train)], "val": [f"va{i:03d}" for i in range(n_val)]}
    for split, names in ids.items():
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for name in names:
            image = rng.normal(128, 25, (size, size, 3)).clip(0, 255).astype(np.uint8)
            mask = np.zeros((size, size), np.uint8)
            for _ in range(rng.integers(1, 3)):
                c = int(rng.integers(len(COLOURS)))
                shape = np.zeros_like(mask)
                x, y = (int(v) for v in rng.integers(8, size - 8, 2))
                a, b = (int(v) for v in rng.integers(6, size // 3, 2))
                if rng.random() < 0.5:
                    cv2.rectangle(shape, (x - a, y - b), (x + a, y + b), 1, -1)
                else:
                    cv2.ellipse(shape, (x, y), (a, b), 0, 0, 360, 1, -1)
                image[shape > 0] = np.array(list(COLOURS.values())[c]) + rng.normal(0, 15, (int(shape.sum()), 3))
                mask[shape > 0] = c + 1
            cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), image[..., ::-1])
            save_index_png(root / "SegmentationClass" / f"{name}.png", mask)
    return root


def pseudo_masks(root, out):
    """Stand-in pseudo masks: the ground truth with a void (255) band along every contour."""
    for i in build_dataset("synthetic", root, "train").ids:
        gt = load_mask(root / "SegmentationClass" / f"{i}.png")
        pseudo = gt.copy()
        pseudo[cv2.morphologyEx(gt, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0] = 255
        save_index_png(out / f"{i}.png", pseudo)
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("seg")
    root = write_shapes(base / "shapes")
    return root, pseudo_masks(root, base / "pseudo")


def run_train(root, masks, exp, *extra, select="pseudo"):
    args = ["--config", "configs/synthetic/deeplabv3plus.yaml", "--data", str(root), "--masks", str(masks),
            "--exp", str(exp), "--select-on", select, *TINY, *extra]
    assert train_seg.main(args) == 0
    return json.loads((exp / "selection.json").read_text())


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One short training run (4 epochs, 32 steps) shared by the tests below."""
    root, masks = data
    exp = tmp_path_factory.mktemp("trained") / "exp"
    return exp, run_train(root, masks, exp, "train.epochs=4")


@pytest.mark.slow
def test_short_training_on_pseudo_masks_beats_its_start(data, trained, capsys):
    root, masks = data
    exp, sel = trained
    scores = {int(e): v["miou"] for e, v in sel["epochs"].items()}
    assert sorted(scores) == [0, 1, 2, 3, 4] and sel["select_on"] == "pseudo" and sel["images"] == 8
    assert sel["best_epoch"] >= 1 and sel["best_miou"] == max(scores[e] for e in range(1, 5))
    assert sel["best_miou"] > scores[0] + 30.0, scores  # trained net beats its initial weights
    records = [json.loads(ln) for ln in (exp / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "val"] == [0, 1, 2, 3, 4]
    assert "no ground truth used" in (exp / "report.md").read_text()

    # a rerun resumes: nothing retrained, nothing re-scored
    before = (exp / "metrics.jsonl").read_text()
    capsys.readouterr()
    run_train(root, masks, exp, "train.epochs=4")
    assert (exp / "metrics.jsonl").read_text() == before
    assert "already trained" in capsys.readouterr().out


@pytest.mark.slow
def test_inference_raw_and_crf_beats_all_background(data, trained, tmp_path, capsys):
    root, _ = data
    exp, sel = trained
    pred = tmp_path / "pred"
    args = ["--exp", str(exp), "--split", "val", "--crf", "deeplab", "--scales", "0.75,1", "--out", str(pred)]
    assert infer_seg.main(args) == 0
    ds = build_dataset("synthetic", root, "val")
    conf = {"raw": 0, "crf_deeplab": 0, "all background": 0}
    for i in ds.ids:
        h, w = load_image(root / "JPEGImages" / f"{i}.jpg").shape[:2]
        gt = load_mask(root / "SegmentationClass" / f"{i}.png")
        for d in ("raw", "crf_deeplab"):
            p = load_mask(pred / d / f"{i}.png")
            assert p.shape == (h, w) and p.max() <= ds.num_classes
            conf[d] = conf[d] + confusion_matrix(gt, p, ds.num_classes + 1)
        conf["all background"] = conf["all background"] + confusion_matrix(gt, np.zeros_like(gt), ds.num_classes + 1)
    miou = {k: summarize_confusion(c, ["background", *ds.class_names])["miou"] for k, c in conf.items()}
    assert miou["raw"] > miou["all background"] + 20.0, miou  # against ground truth, on the val split
    cfg = yaml.safe_load((pred / "infer_seg.yaml").read_text())
    assert cfg["infer"]["scales"] == [0.75, 1.0] and cfg["infer_seg"]["epoch"] == sel["best_epoch"]
    assert cfg["infer_seg"]["crf_params"]["bi_sxy"] == 67.0
    capsys.readouterr()
    assert infer_seg.main(args) == 0
    assert "0 images predicted, 8 skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_inference_shards_split_the_images(data, trained, tmp_path, monkeypatch, capsys):
    exp, _ = trained
    out = tmp_path / "pred"
    for rank in (0, 1):
        monkeypatch.setattr(infer_seg.du, "init_distributed", lambda r=rank: (r, 2))
        args = ["--exp", str(exp), "--split", "val", "--scales", "1", "--no-flip", "--out", str(out)]
        assert infer_seg.main(args) == 0
    assert capsys.readouterr().out.count("4 images predicted, 0 skipped") == 2
    assert sorted(p.stem for p in (out / "raw").glob("*.png")) == [f"va{i:03d}" for i in range(8)]


def test_selection_on_ground_truth_is_recorded_and_not_mixed(data, tmp_path):
    root, masks = data
    exp = tmp_path / "exp"
    sel = run_train(root, masks, exp, "train.epochs=1", select="gt")
    assert sel["select_on"] == "gt" and "GROUND TRUTH" in sel["set"] and sel["images"] == 8
    assert "**ground truth**" in (exp / "report.md").read_text()
    assert yaml.safe_load((exp / "config.yaml").read_text())["select"]["on"] == "gt"
    with pytest.raises(ConfigError, match="--select-on"):
        run_train(root, masks, exp, "train.epochs=1", select="pseudo")


def test_missing_pseudo_masks_is_a_clear_error(data, tmp_path):
    root, _ = data
    with pytest.raises(ConfigError, match="pseudo-mask directory not found"):
        run_train(root, tmp_path / "nowhere", tmp_path / "exp")
