"""The "folder" dataset: images/ + labels.txt|labels.csv + class_names.txt (+ masks/, split lists)."""

import numpy as np
import pytest
from PIL import Image

from wsss.data import build_dataset, detect_dataset
from wsss.data.io import save_index_png
from wsss.errors import DataError

H, W = 10, 14


def write_image(path, seed, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, format=fmt)
    return rgb


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "mydata"
    write_image(root / "images" / "img001.jpg", 1)
    png = write_image(root / "images" / "img002.png", 2)
    write_image(root / "images" / "img003.jpg", 3)
    (root / "class_names.txt").write_text("cat\ndog\nbird\n")
    (root / "labels.txt").write_text("# id classes\nimg001 cat dog\n\nimg002 bird\nimg003\n")
    mask = np.zeros((H, W), np.uint8)
    mask[2:5, 3:9] = 3
    mask[0, 0] = 255
    save_index_png(root / "masks" / "img002.png", mask)
    return root, png, mask


def test_reads_labels_masks_and_all_split(folder):
    root, png, mask = folder
    assert detect_dataset(root) == "folder"
    ds = build_dataset("folder", root, "all")
    assert ds.ids == ["img001", "img002", "img003"] and ds.class_names == ["cat", "dog", "bird"]
    a, b, c = ds[0], ds[1], ds[2]
    np.testing.assert_array_equal(a["label"], [1, 1, 0])
    assert a["mask"] is None and a["image"].shape == (H, W, 3)
    np.testing.assert_array_equal(b["label"], [0, 0, 1])
    np.testing.assert_array_equal(b["image"], png)  # lossless PNG read back exactly
    np.testing.assert_array_equal(b["mask"], mask)
    np.testing.assert_array_equal(c["label"], [0, 0, 0])  # listed without classes: background only


def test_split_list_and_csv_with_spaces(folder):
    root, _, _ = folder
    (root / "train.txt").write_text("img003\nimg001\n")
    assert build_dataset("folder", root, "train").ids == ["img003", "img001"]
    (root / "labels.txt").unlink()
    (root / "class_names.txt").write_text("cat\ntraffic light\nbird\n")
    (root / "labels.csv").write_text("image,classes\nimg001,traffic light,cat\nimg002,bird\nimg003\n")
    ds = build_dataset("folder", root, "all")
    np.testing.assert_array_equal(ds[0]["label"], [1, 1, 0])
    assert ds.ids == ["img001", "img002", "img003"]


def test_errors_name_the_file(folder):
    root, _, _ = folder
    with pytest.raises(DataError, match=r"val\.txt: split list for 'val' not found"):
        build_dataset("folder", root, "val")
    (root / "labels.txt").write_text("img001 cat\nimg002 dgo\n")
    with pytest.raises(DataError, match=r"labels\.txt: line 2: unknown class name\(s\) \['dgo'\]"):
        build_dataset("folder", root, "all")
    (root / "labels.txt").write_text("img001 cat\nimg009 dog\n")
    with pytest.raises(DataError, match=r"img009\.jpg"):
        build_dataset("folder", root, "all")
    (root / "labels.txt").write_text("img001 cat\n")
    (root / "train.txt").write_text("img001\nimg002\n")
    with pytest.raises(DataError, match=r"train\.txt: 1 id\(s\) of the split have no line in labels\.txt"):
        build_dataset("folder", root, "train")
    (root / "labels.txt").write_text("img002 cat dog\n")
    save_index_png(root / "masks" / "img002.png", np.zeros((H, W + 1), np.uint8))
    with pytest.raises(DataError, match=r"img002\.png: mask is 15x10"):
        build_dataset("folder", root, "all")[0]
    (root / "class_names.txt").unlink()
    with pytest.raises(DataError, match=r"class_names\.txt: class name list not found[\s\S]*cat, dog"):
        build_dataset("folder", root, "all")
    with pytest.raises(DataError, match="missing"):
        build_dataset("folder", root / "missing", "all")
