"""tools/prepare_coco.py (pycocotools instances -> VOC-layout root) and the "coco" dataset."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from tools import prepare_coco
from wsss.data import build_dataset, detect_dataset
from wsss.data.io import load_image, load_mask
from wsss.errors import DataError

H, W = 20, 24
PERSON, CAR, DOG = 1, 2, 3  # contiguous values of category ids 1, 3, 18


def box(y0, y1, x0, x1):
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def compressed_rle(m):
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def uncompressed_rle(m):
    """COCO crowd format: run lengths of the column-major mask, starting with a run of zeros."""
    flat = m.flatten(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return {"size": [H, W], "counts": [int(c) for c in counts]}


def ann(aid, image_id, cat, seg, area, crowd=0):
    return {"id": aid, "image_id": image_id, "category_id": cat, "segmentation": seg, "area": float(area),
            "bbox": [0, 0, 1, 1], "iscrowd": crowd}


CATS = [{"id": 18, "name": "dog", "supercategory": "animal"}, {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 3, "name": "car", "supercategory": "vehicle"}]
DOG_SQ = box(6, 10, 6, 10)
CROWD_BAND = box(12, 20, 0, W)
TIE_A, TIE_B = box(2, 6, 2, 8), box(4, 8, 4, 10)  # equal areas (24 px), overlapping on rows 4-5, cols 4-7


def write_coco(root):
    def img(i, split):
        name = f"COCO_{split}2014_{i:012d}.jpg"
        rgb = np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)
        (root / f"{split}2014").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / f"{split}2014" / name, quality=95)
        return {"id": i, "file_name": name, "height": H, "width": W}

    train = {"images": [img(1, "train"), img(2, "train")], "categories": CATS, "annotations": [
        ann(1, 1, 18, compressed_rle(DOG_SQ), 16),  # listed before the larger person it lies on
        ann(2, 1, 1, [[2, 2, 18, 2, 18, 16, 2, 16]], 224),  # polygon rectangle x 2..18, y 2..16
        ann(3, 1, 3, uncompressed_rle(CROWD_BAND), CROWD_BAND.sum(), crowd=1),
    ]}
    val = {"images": [img(3, "val")], "categories": CATS, "annotations": [
        ann(7, 3, 1, compressed_rle(TIE_B), 24), ann(6, 3, 18, compressed_rle(TIE_A), 24)]}
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(train))
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(val))


@pytest.fixture
def prepared(tmp_path):
    coco, out = tmp_path / "coco", tmp_path / "coco_voc"
    write_coco(coco)
    assert prepare_coco.main(["--coco", str(coco), "--out", str(out)]) == 0
    return coco, out


def test_masks_follow_the_overlap_rule(prepared):
    _, out = prepared
    m = load_mask(out / "SegmentationClass" / "COCO_train2014_000000000001.png")
    assert m[7, 7] == DOG  # smaller dog painted after the larger person
    np.testing.assert_array_equal(m[DOG_SQ == 1], DOG)
    assert (m[3:12, 3:17][DOG_SQ[3:12, 3:17] == 0] == PERSON).all()  # person interior
    assert (m[12:15, 3:17] == PERSON).all()  # crowd does not cover a person
    assert (m[17:20, :] == 255).all() and (m[12:16, 20:] == 255).all()  # crowd elsewhere: ignore
    assert (m[0:2, :] == 0).all() and (m[2:12, 20:] == 0).all()  # background
    assert set(np.unique(m)) == {0, PERSON, DOG, 255}
    empty = load_mask(out / "SegmentationClass" / "COCO_train2014_000000000002.png")
    assert empty.shape == (H, W) and empty.max() == 0
    tie = load_mask(out / "SegmentationClass" / "COCO_val2014_000000000003.png")
    assert (tie[4:6, 4:8] == PERSON).all()  # equal areas: higher annotation id (7, person) on top
    assert tie[2, 2] == DOG and tie[7, 9] == PERSON and tie[0, 0] == 0


def test_dataset_reads_prepared_root(prepared):
    coco, out = prepared
    assert (out / "class_names.txt").read_text().split("\n")[:3] == ["person", "car", "dog"]
    assert detect_dataset(out) == "coco"
    ds = build_dataset("coco", out, "train")
    assert ds.ids == ["COCO_train2014_000000000001", "COCO_train2014_000000000002"]
    assert ds.class_names == ["person", "car", "dog"] and ds.num_classes == 3
    s = ds[0]
    np.testing.assert_array_equal(s["label"], [1, 1, 1])  # the crowd-only car counts as present
    np.testing.assert_array_equal(s["image"], load_image(coco / "train2014" / "COCO_train2014_000000000001.jpg"))
    assert (out / "JPEGImages" / f"{s['id']}.jpg").is_symlink()
    np.testing.assert_array_equal(ds[1]["label"], [0, 0, 0])
    val = build_dataset("coco", out, "val")
    np.testing.assert_array_equal(val[0]["label"], [1, 0, 1])
    assert (out / "prepare_coco.yaml").is_file()


def test_resume_copy_and_merge_labels(prepared, tmp_path, capsys):
    coco, out = prepared
    capsys.readouterr()
    prepare_coco.main(["--coco", str(coco), "--out", str(out), "--splits", "val"])
    assert "0 written, 1 kept" in capsys.readouterr().out
    labels = json.loads((out / "cls_labels.json").read_text())
    assert labels["COCO_train2014_000000000001"] == [0, 1, 2]  # earlier split's labels kept
    copy = tmp_path / "copy"
    prepare_coco.main(["--coco", str(coco), "--out", str(copy), "--splits", "val", "--images", "copy"])
    img = copy / "JPEGImages" / "COCO_val2014_000000000003.jpg"
    assert img.is_file() and not img.is_symlink()


def test_errors_name_the_file(tmp_path):
    coco = tmp_path / "coco"
    write_coco(coco)
    (coco / "val2014" / "COCO_val2014_000000000003.jpg").unlink()
    with pytest.raises(DataError, match=r"COCO_val2014_000000000003\.jpg: COCO image not found"):
        prepare_coco.main(["--coco", str(coco), "--out", str(tmp_path / "o"), "--splits", "val"])
    with pytest.raises(DataError, match=r"instances_test2014\.json"):
        prepare_coco.main(["--coco", str(coco), "--out", str(tmp_path / "o"), "--splits", "test"])
    (coco / "annotations" / "instances_val2014.json").write_text("{broken")
    with pytest.raises(DataError, match=r"instances_val2014\.json: cannot read"):
        prepare_coco.main(["--coco", str(coco), "--out", str(tmp_path / "o"), "--splits", "val"])
    prepare_coco.main(["--coco", str(coco), "--out", str(tmp_path / "o"), "--splits", "train"])
    (tmp_path / "o" / "cls_labels.json").unlink()
    with pytest.raises(DataError, match=r"cls_labels\.json: COCO image-label file not found"):
        build_dataset("coco", tmp_path / "o", "train")
