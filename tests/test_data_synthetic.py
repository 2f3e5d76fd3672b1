"""The synthetic benchmark generator: determinism, layout, labels, parts, backgrounds, tool."""

import json

import cv2
import numpy as np
import pytest

from wsss.cli import run_main
from wsss.data.io import load_image, load_mask
from wsss.data.synthetic import (BACKGROUNDS, CLASS_NAMES, CLASSES, GROUPS, NUM_CLASSES, generate,
                                 render_sample, sample_id, scene_options)
from wsss.errors import ConfigError, DataError

SMALL = dict(seed=3, n_train=8, n_val=4, size=64, progress=False)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "a"
    generate(root, workers=1, **SMALL)
    return root


def test_same_seed_is_byte_identical_serial_or_parallel(small, tmp_path):
    generate(tmp_path / "b", workers=2, **SMALL)
    a, b = _files(small), _files(tmp_path / "b")
    assert len(a) == 12 * 2 + 3 + 1  # jpg + png per image, train/val lists + class names, meta
    assert a == b


def test_other_seed_differs_and_val_ignores_train_size(small, tmp_path):
    generate(tmp_path / "c", **{**SMALL, "seed": 4})
    a, c = _files(small), _files(tmp_path / "c")
    jpgs = [k for k in a if k.endswith(".jpg")]
    assert a.keys() - {"meta.json"} == c.keys() - {"meta.json"}
    assert all(a[k] != c[k] for k in jpgs)
    # sample (split, index) has its own random stream: fewer train images leave val unchanged
    generate(tmp_path / "d", **{**SMALL, "n_train": 5})
    d = _files(tmp_path / "d")
    assert all(d[k] == a[k] for k in a if k.startswith(("JPEGImages/val", "SegmentationClass/val")))


def test_layout_masks_and_labels(small):
    assert (small / "class_names.txt").read_text().split() == list(CLASS_NAMES)
    assert len(CLASS_NAMES) >= 8
    meta = json.loads((small / "meta.json").read_text())
    assert meta["config"]["seed"] == 3 and meta["config"]["size"] == 64
    assert len(meta["design"]["classes"]) == NUM_CLASSES
    for split, n in (("train", 8), ("val", 4)):
        ids = (small / "ImageSets/Segmentation" / f"{split}.txt").read_text().split()
        assert ids == [sample_id(split, i) for i in range(n)]
        for i, sid in enumerate(ids):
            image = load_image(small / "JPEGImages" / f"{sid}.jpg")
            mask = load_mask(small / "SegmentationClass" / f"{sid}.png")
            assert image.shape == (64, 64, 3) and mask.shape == (64, 64)
            values = set(np.unique(mask).tolist())
            assert values <= set(range(NUM_CLASSES + 1)) and 0 in values
            classes = sorted(v - 1 for v in values - {0})
            assert 1 <= len(classes) <= 2
            sample = render_sample(3, i, 64, split)
            assert sample.classes == classes
            assert np.array_equal(sample.mask, mask)


def test_loader_reads_generated_dataset(small):
    from wsss.data import build_dataset, detect_dataset

    assert detect_dataset(small) == "synthetic"
    ds = build_dataset("synthetic", small, "val")
    assert ds.class_names == list(CLASS_NAMES)
    for i in range(len(ds)):
        label = ds[i]["label"]
        assert np.nonzero(label)[0].tolist() == render_sample(3, i, 64, "val").classes


def test_parts_are_small_class_specific_and_inside_the_object():
    fractions = []
    for i in range(60):
        s = render_sample(11, i, 128)
        assert 1 <= len(s.objects) <= 3 and 1 <= len(s.classes) <= 2
        assert not (s.parts & (s.mask == 0)).any()
        for k, o in enumerate(s.objects):
            fractions.append(o["part_fraction"])
            assert 0.17 <= o["extent"] <= 0.62
            # visible areas in the info agree with the instance and part maps
            assert o["visible_area"] == (s.instances == k).sum() >= 0.5 * o["area"]
            assert o["visible_part_area"] == ((s.instances == k) & s.parts).sum() >= 0.8 * o["part_area"]
            assert (s.mask[s.instances == k] == o["class"] + 1).all()
    fractions = np.array(fractions)
    assert fractions.min() > 0.07 and fractions.max() < 0.18
    assert 0.11 < fractions.mean() < 0.14


def test_image_matches_mask_pixel_for_pixel():
    """Each visible part is one flat colour, its class's, with no spill onto the next pixel.

    This ties the image to the instance/part maps (occlusion order) and fails on blurred or
    anti-aliased edges (border pixels would mix colours) and on a mask shifted off the image.
    """
    colours = np.array([c.part_colour for c in CLASSES], np.float32)
    inside, inside_total, spill, ring_total = 0, 0, 0, 0
    for i in range(40):
        s = render_sample(5, i, 96)
        image = s.image.astype(np.float32)
        for k, o in enumerate(s.objects):
            part = (s.instances == k) & s.parts
            median = np.median(image[part], 0)
            assert np.linalg.norm(colours - median, axis=1).argmin() == o["class"]
            inside += int((np.linalg.norm(image[part] - median, axis=1) < 25).sum())
            inside_total += int(part.sum())
            ring = cv2.dilate(part.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~part
            spill += int((np.linalg.norm(image[ring] - median, axis=1) < 25).sum())
            ring_total += int(ring.sum())
    assert inside / inside_total > 0.99
    assert spill / ring_total < 0.02


def test_backgrounds_are_class_correlated():
    preferred, per_class = 0, np.zeros((NUM_CLASSES, len(BACKGROUNDS)), int)
    n = 200
    for i in range(n):
        s = render_sample(7, i, 48)
        prefs = {CLASSES[c].background for c in s.classes}
        preferred += s.background in prefs
        if len(s.classes) == 1:
            per_class[s.classes[0], s.background] += 1
    # 0.75 by design; background independent of the classes would give at most 2/8
    assert 0.65 <= preferred / n <= 0.85
    assert (per_class.argmax(1) == [c.background for c in CLASSES]).all()


def test_context_prior_is_a_parameter():
    """p_preferred moves the preferred-background rate; 1 and 0 are exact; meta records it only when set."""
    def rate(p, n=200):
        samples = [render_sample(7, i, 48, p_preferred=p) for i in range(n)]
        return np.mean([s.background in {CLASSES[c].background for c in s.classes} for s in samples])

    assert rate(1.0) == 1.0 and rate(0.0) == 0.0
    assert 0.05 <= rate(0.125) <= 0.25  # nearly uniform: 1/8 for one class, 2/8 for two
    assert scene_options({"seed": 0}) == {"p_preferred": 0.75}
    assert scene_options({"p_preferred_background": 0.125}) == {"p_preferred": 0.125}


def test_context_prior_in_meta_and_rerender(tmp_path):
    args = dict(seed=2, n_train=3, n_val=2, size=32, progress=False)
    generate(tmp_path / "a", **args)
    generate(tmp_path / "b", **args, p_preferred=0.125)
    a, b = (json.loads((tmp_path / d / "meta.json").read_text()) for d in "ab")
    assert "p_preferred_background" not in a["config"] and a["design"]["scene"]["p_preferred_background"] == 0.75
    assert b["config"]["p_preferred_background"] == 0.125 == b["design"]["scene"]["p_preferred_background"]
    for i in range(2):  # the masks re-render from meta.json's config
        s = render_sample(2, i, 32, "val", **scene_options(b["config"]))
        assert np.array_equal(s.mask, load_mask(tmp_path / "b/SegmentationClass" / f"{sample_id('val', i)}.png"))
    with pytest.raises(DataError, match="p_preferred_background"):
        generate(tmp_path / "b", **args)  # a different context prior is another dataset
    with pytest.raises(ConfigError):
        generate(tmp_path / "c", **args, p_preferred=1.5)


def test_background_colours_overlap_body_colours():
    """Each body group has a background of similar mean colour: colour alone does not separate them."""
    body, back = {g: [] for g in range(len(GROUPS))}, {b: [] for b in range(len(BACKGROUNDS))}
    for i in range(120):
        s = render_sample(9, i, 64)
        back[s.background].append(s.image[s.mask == 0].mean(0))
        for k, o in enumerate(s.objects):
            body[CLASSES[o["class"]].group].append(s.image[(s.instances == k) & ~s.parts].mean(0))
    bg_means = np.array([np.mean(v, 0) for v in back.values()])
    for g, v in body.items():
        assert np.linalg.norm(bg_means - np.mean(v, 0), axis=1).min() < 45, GROUPS[g].name


def test_rerun_skips_mismatch_refuses_overwrite_regenerates(tmp_path):
    args = dict(seed=0, n_train=2, n_val=1, size=32, progress=False)
    assert not generate(tmp_path, **args)["skipped"]
    before = (tmp_path / "JPEGImages/train_000000.jpg").read_bytes()
    assert generate(tmp_path, **args)["skipped"]
    with pytest.raises(DataError, match="seed 0"):
        generate(tmp_path, **{**args, "seed": 1})
    assert json.loads((tmp_path / "meta.json").read_text())["config"]["seed"] == 0
    res = generate(tmp_path, **{**args, "seed": 1}, overwrite=True)
    assert not res["skipped"] and res["written"] == 3
    assert json.loads((tmp_path / "meta.json").read_text())["config"]["seed"] == 1
    assert (tmp_path / "JPEGImages/train_000000.jpg").read_bytes() != before


@pytest.mark.parametrize("kwargs", [dict(size=16), dict(n_train=0), dict(n_val=0), dict(workers=0), dict(seed=-1)])
def test_bad_arguments_raise(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        generate(tmp_path, **{**dict(n_train=1, n_val=1, size=32, progress=False), **kwargs})
    assert not (tmp_path / "meta.json").exists()


def test_tool(tmp_path, capsys):
    from tools.make_synthetic import main

    with pytest.raises(SystemExit) as e:
        run_main(lambda: main(["--out", str(tmp_path), "--size", "16"]))
    assert e.value.code != 0 and "below 32 px" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        run_main(lambda: main(["--out", str(tmp_path), "--train", "0"]))
    assert e.value.code != 0 and "training image" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        run_main(lambda: main(["--out", str(tmp_path), "--train", "3", "--val", "2", "--size", "32", "--workers", "1"]))
    assert e.value.code == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith("synthetic: 3 train + 2 val") and "5 images written" in out
    assert len((tmp_path / "ImageSets/Segmentation/train.txt").read_text().split()) == 3
