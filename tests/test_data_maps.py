"""Per-image maps attached to any dataset (wsss.data.maps): aligned through the transform, typed by
kind, and clear errors for missing or wrong-size files."""

import pickle
import random

import numpy as np
import pytest
import torch
from PIL import Image

from wsss.data import build_dataset, collate
from wsss.data.io import save_gray_png
from wsss.data.maps import CamHintMap, MapDataset, PngMap, ValidMap, attach_maps, load_index_map
from wsss.data.transforms import build_train_transform
from wsss.errors import ConfigError, DataError

OFFSET = 1000  # index-map id = mask value + OFFSET: beyond 8 bits, and tied to the mask pixel by pixel


@pytest.fixture(scope="module")
def tiny(fg_maps_split):
    """The conftest split (saliency PNGs and CAMs = foreground) plus a 16-bit id PNG per image
    (mask + OFFSET)."""
    root, ds = fg_maps_split
    (root / "ids").mkdir(exist_ok=True)
    for i in ds.ids:
        Image.fromarray(ds.load_gt_mask(i).astype(np.uint16) + OFFSET).save(root / "ids" / f"{i}.png")
    return root, ds


def sources(root):
    return (PngMap(root / "sal", "saliency"), PngMap(root / "ids", "ids", kind="index"),
            CamHintMap(root / "cams"), ValidMap())


def test_untransformed_maps_have_their_kinds(tiny):
    root, base = tiny
    s = attach_maps(base, *sources(root))[0]
    mask = s["mask"]
    assert s["maps"]["ids"].dtype == np.uint16
    np.testing.assert_array_equal(s["maps"]["ids"], mask.astype(np.int64) + OFFSET)
    fg = (mask > 0) & (mask < 255)
    np.testing.assert_array_equal(s["maps"]["saliency"], fg.astype(np.float32))
    np.testing.assert_allclose(s["maps"]["hint"], fg, atol=1e-3)
    assert s["maps"]["valid"].dtype == np.float32 and s["maps"]["valid"].all()


def test_maps_attached_before_the_dataset_transform(tiny):
    root, base = tiny
    aug = {"resize_long": [30, 70], "crop": 56, "hflip": True, "randaugment": {"n": 2, "m": 10}}
    ds = build_dataset("synthetic", root / "data", "train", transform=build_train_transform(aug))
    ds = attach_maps(ds, *sources(root))  # the dataset's own transform now runs after the maps
    assert ds.ids == base.ids and ds.num_classes == base.num_classes and len(ds) == len(base)
    random.seed(0)
    samples = [ds[k % len(ds)] for k in range(8)]
    for s in samples:
        mask, ids, valid = s["mask"], s["maps"]["ids"], s["maps"]["valid"]
        assert ids.dtype == torch.int64 and s["maps"]["saliency"].dtype == torch.float32
        inside = mask != 255
        assert torch.equal(ids[inside], mask[inside] + OFFSET)  # nearest: same pixels as the mask
        assert (ids[~inside] == 255).all()  # padding and fill of index maps is 255
        # valid is a float map (bilinear): below 1 wherever the nearest pixel is padding, above 0 elsewhere
        assert (valid[~inside] < 1).all() and (valid[inside] > 0).all()
        fg = ((mask > 0) & inside).float()
        sal = s["maps"]["saliency"]
        assert ((sal - fg).abs()[valid == 1] < 0.5).float().mean() > 0.95  # bilinear, away from edges
    batch = collate(samples)
    assert (batch["mask"] == 255).any() and (batch["maps"]["valid"] == 0).any()  # padding was exercised
    assert batch["maps"]["ids"].dtype == torch.int64 and tuple(batch["maps"]["ids"].shape) == (8, 56, 56)
    wrapped = pickle.loads(pickle.dumps(ds))  # DataLoader workers may pickle it
    assert wrapped.ids == ds.ids


def test_wrappers_nest_and_transform_can_be_given(tiny):
    root, base = tiny
    inner = attach_maps(base, PngMap(root / "sal", "saliency"))
    outer = MapDataset(inner, [ValidMap("keep")], transform=build_train_transform({"crop": 48}))
    s = outer[1]
    assert set(s["maps"]) == {"saliency", "keep"} and tuple(s["maps"]["keep"].shape) == (48, 48)
    with pytest.raises(ConfigError, match="same key"):
        attach_maps(base, ValidMap(), ValidMap())


def test_missing_folder_and_file_are_named(tiny, tmp_path):
    root, base = tiny
    with pytest.raises(DataError, match="saliency map folder not found") as e:
        attach_maps(base, PngMap(tmp_path / "nowhere", "saliency"))
    assert "nowhere" in str(e.value) and "fix:" in str(e.value)
    (tmp_path / "sal").mkdir()
    save_gray_png(tmp_path / "sal" / f"{base.ids[0]}.png", np.zeros((48, 48), np.uint8))
    with pytest.raises(DataError, match=f"saliency map file for '{base.ids[1]}' not found") as e:
        attach_maps(base, PngMap(tmp_path / "sal", "saliency"))
    assert str(tmp_path / "sal" / f"{base.ids[1]}.png") in str(e.value)
    with pytest.raises(DataError, match="CAM file for"):
        attach_maps(base, CamHintMap(tmp_path / "sal"))


def test_wrong_size_or_kind_is_named(tiny, tmp_path):
    root, base = tiny
    for i in base.ids:
        save_gray_png(tmp_path / "small" / f"{i}.png", np.zeros((20, 48), np.uint8))
        Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(tmp_path / f"{i}.png")
    ds = attach_maps(base, PngMap(tmp_path / "small", "saliency"))
    with pytest.raises(DataError, match="saliency map is 48x20 but its image is 48x48") as e:
        ds[0]
    assert str(tmp_path / "small" / f"{base.ids[0]}.png") in str(e.value) and "original size" in str(e.value)
    with pytest.raises(DataError, match="one channel of integer ids"):
        attach_maps(base, PngMap(tmp_path, "ids", kind="index"))[0]
    with pytest.raises(ConfigError, match="unknown map kind"):
        PngMap(tmp_path, "x", kind="nearest")
    Image.fromarray(np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).save(tmp_path / "wide.png")
    assert load_index_map(tmp_path / "wide.png").max() == 55000  # 16-bit ids load as they are
