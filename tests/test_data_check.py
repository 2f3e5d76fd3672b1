"""Bad data found before training (wsss.data.check) and worker errors shown as wsss errors."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from wsss.cli import run_main
from wsss.data import LabelsOnly, build_dataset
from wsss.data import check as check_mod
from wsss.data.check import check_split
from wsss.data.io import save_index_png
from wsss.data.synthetic import generate
from wsss.errors import DataError


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("check") / "data"
    generate(root, seed=2, n_train=6, n_val=1, size=32, progress=False)
    return root


@pytest.fixture
def root(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "data")
    return tmp_path / "data"


def first_id(root):
    return (root / "ImageSets/Segmentation/train.txt").read_text().split()[0]


def test_labels_cached_per_split_and_equal_to_the_dataset_labels(root, tmp_path, monkeypatch):
    ds = build_dataset("synthetic", root, "train")
    want = {i: np.flatnonzero(ds.load_label(i)).tolist() for i in ds.ids}
    cache = tmp_path / "exp/labels"
    wrapped = LabelsOnly(build_dataset("synthetic", root, "train"))
    assert check_split(wrapped, cache) == 6
    saved = json.loads((cache / "train.json").read_text())
    assert saved["labels"] == want and saved["split"] == "train"
    # A second start reads the cache: no mask is read for a label.
    monkeypatch.setattr(check_mod, "derive_labels", lambda ds: pytest.fail("labels derived again"))
    fresh = build_dataset("synthetic", root, "train")
    monkeypatch.setattr(fresh, "load_gt_mask", lambda i: pytest.fail("mask read for a label"))
    check_split(fresh, cache)
    assert all(np.array_equal(fresh.load_label(i, None), ds.load_label(i)) for i in ds.ids)
    # Another split list (an id dropped) is another key: derived again.
    monkeypatch.undo()
    lst = root / "ImageSets/Segmentation/train.txt"
    lst.write_text("\n".join(lst.read_text().split()[1:]) + "\n")
    check_split(build_dataset("synthetic", root, "train"), cache)
    assert len(json.loads((cache / "train.json").read_text())["labels"]) == 5


def test_mask_with_unknown_class_fails_at_start_naming_the_file(root, tmp_path):
    i = first_id(root)
    path = root / "SegmentationClass" / f"{i}.png"
    mask = np.asarray(Image.open(path)).copy()
    mask[0, 0] = 200
    save_index_png(path, mask)
    with pytest.raises(DataError, match=rf"{i}.png: mask holds class index 200") as e:
        check_split(build_dataset("synthetic", root, "train"), tmp_path / "labels")
    assert "fix:" in str(e.value)
    assert not (tmp_path / "labels/train.json").exists()  # nothing cached for a bad split


def test_mask_of_another_size_fails_at_start(root, tmp_path):
    i = first_id(root)
    path = root / "SegmentationClass" / f"{i}.png"
    save_index_png(path, np.asarray(Image.open(path))[:16, :16])
    with pytest.raises(DataError, match=rf"{i}.png: mask is 16x16 but its image is 32x32"):
        check_split(build_dataset("synthetic", root, "train"), None)


def test_check_data_decodes_every_image(root):
    i = first_id(root)
    jpg = root / "JPEGImages" / f"{i}.jpg"
    data = jpg.read_bytes()
    jpg.write_bytes(data[:len(data) * 2 // 3])  # the header survives, the pixels do not
    ds = build_dataset("synthetic", root, "train")
    check_split(ds, None)  # labels and sizes only: the header is intact
    with pytest.raises(DataError, match=rf"{i}.jpg: cannot decode image"):
        check_split(ds, None, decode=True)


class Broken(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        raise DataError("mask holds class index 9 but the dataset has 3 classes", path=f"/d/m{i}.png",
                        fix="check class_names.txt")


def test_worker_error_reaches_the_user_as_the_same_paragraph(capsys):
    def main():
        next(iter(torch.utils.data.DataLoader(Broken(), num_workers=1)))

    with pytest.raises(SystemExit) as e:
        run_main(main)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err == ("error: /d/m0.png: mask holds class index 9 but the dataset has 3 classes\n"
                   "  fix: check class_names.txt\n")
