"""VOC-layout datasets (voc, synthetic), root detection, collate, and tools/prepare_voc.py (SBD)."""

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image

from tools import prepare_voc
from wsss.cli import run_main
from wsss.data import build_dataset, collate, detect_dataset
from wsss.data.io import load_mask, save_index_png, voc_palette
from wsss.data.transforms import build_train_transform
from wsss.data.voc import VOC_CLASSES, derive_train_aug, load_sbd_mask
from wsss.errors import ConfigError, DataError

H, W = 12, 16
CLS = {name: i for i, name in enumerate(VOC_CLASSES)}


def write_jpg(path, seed=0, size=(H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)
    Image.fromarray(rgb).save(path, quality=95)


def write_xml(path, names):
    path.parent.mkdir(parents=True, exist_ok=True)
    objs = "".join(f"<object><name>{n}</name><difficult>0</difficult></object>" for n in names)
    path.write_text(f"<annotation><filename>{path.stem}.jpg</filename>{objs}</annotation>")


def write_split(root, split, ids):
    p = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(f"{i}\n" for i in ids))


def mask_a():
    """aeroplane (1) and person (15) with a void (255) border."""
    m = np.zeros((H, W), np.uint8)
    m[2:6, 2:8] = CLS["aeroplane"] + 1
    m[7:11, 9:14] = CLS["person"] + 1
    m[6, :] = 255
    return m


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / "VOC2012"
    for k, i in enumerate(["a", "b", "c"]):
        write_jpg(root / "JPEGImages" / f"{i}.jpg", seed=k)
    save_index_png(root / "SegmentationClass" / "a.png", mask_a())  # palette PNG
    gray = np.zeros((H, W), np.uint8)
    gray[:3, :3] = CLS["dog"] + 1
    Image.fromarray(gray).save(root / "SegmentationClass" / "b.png")  # plain 8-bit gray PNG
    write_xml(root / "Annotations" / "a.xml", ["person", "aeroplane", "dog"])  # differs from the mask
    write_xml(root / "Annotations" / "c.xml", ["dog", "cat", "dog"])  # XML only (like the test split)
    write_split(root, "train", ["a", "b"])
    write_split(root, "test", ["c"])
    write_split(root, "val", ["a"])
    return root


def onehot(*names):
    y = np.zeros(20, np.float32)
    for n in names:
        y[CLS[n]] = 1
    return y


def test_voc_reads_palette_masks_and_labels(voc_root):
    ds = build_dataset("voc", voc_root, "train")
    assert ds.ids == ["a", "b"] and ds.num_classes == 20 and ds.class_names == list(VOC_CLASSES)
    a, b = ds[0], ds[1]
    assert a["image"].shape == (H, W, 3) and a["image"].dtype == np.uint8
    np.testing.assert_array_equal(a["mask"], mask_a())  # palette indices, not RGB colours
    np.testing.assert_array_equal(a["label"], onehot("aeroplane", "person"))  # 0 and 255 excluded
    assert a["label"].dtype == np.float32 and a["maps"] == {} and a["id"] == "a"
    np.testing.assert_array_equal(b["label"], onehot("dog"))
    # the palette really is VOC's: class 15 (person) is drawn (192, 128, 128)
    with Image.open(voc_root / "SegmentationClass" / "a.png") as im:
        assert im.mode == "P" and tuple(im.convert("RGB").getpixel((9, 7))) == tuple(voc_palette()[45:48])


def test_xml_only_image_and_label_source(voc_root):
    c = build_dataset("voc", voc_root, "test")[0]
    assert c["mask"] is None
    np.testing.assert_array_equal(c["label"], onehot("dog", "cat"))
    a = build_dataset("voc", voc_root, "val", label_source="xml")[0]
    np.testing.assert_array_equal(a["label"], onehot("person", "aeroplane", "dog"))
    with pytest.raises(ConfigError):
        build_dataset("voc", voc_root, "val", label_source="xml+mask")


def test_mask_dir_replaces_masks_not_labels(voc_root, tmp_path):
    pseudo = np.full((H, W), CLS["cat"] + 1, np.uint8)
    save_index_png(tmp_path / "pseudo" / "a.png", pseudo)
    s = build_dataset("voc", voc_root, "val", mask_dir=tmp_path / "pseudo")[0]
    np.testing.assert_array_equal(s["mask"], pseudo)
    np.testing.assert_array_equal(s["label"], onehot("aeroplane", "person"))
    ds = build_dataset("voc", voc_root, "train", mask_dir=tmp_path / "pseudo")
    with pytest.raises(DataError, match="b.png"):
        ds[1]


def test_synthetic_needs_class_names_and_detection(voc_root, tmp_path):
    assert detect_dataset(voc_root) == "voc"
    with pytest.raises(DataError, match="class_names.txt"):
        build_dataset("synthetic", voc_root, "train")
    (voc_root / "class_names.txt").write_text("\n".join(VOC_CLASSES) + "\n")
    assert detect_dataset(voc_root) == "synthetic"
    ds = build_dataset("synthetic", voc_root, "train")
    assert ds.class_names == list(VOC_CLASSES) and ds.root == voc_root
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        detect_dataset(tmp_path / "empty")
    with pytest.raises(DataError, match="nowhere"):
        detect_dataset(tmp_path / "nowhere")


def test_collate_raw_and_transformed(voc_root):
    ds = build_dataset("voc", voc_root, "train")
    raw = collate([ds[0], build_dataset("voc", voc_root, "test")[0]])
    assert raw["id"] == ["a", "c"] and tuple(raw["image"].shape) == (2, H, W, 3)
    assert raw["mask"][1] is None and tuple(raw["label"].shape) == (2, 20)
    ds = build_dataset("voc", voc_root, "train", transform=build_train_transform({"crop": 8}))
    b = collate([ds[0], ds[1]])
    assert tuple(b["image"].shape) == (2, 3, 8, 8) and str(b["mask"].dtype) == "torch.int64"
    assert b["maps"] == {} and b["id"] == ["a", "b"]


# --- bad input ---------------------------------------------------------------------------------

def test_errors_name_the_file(voc_root, tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        build_dataset("voc", tmp_path / "nowhere", "train")
    with pytest.raises(DataError, match=r"trainx\.txt[\s\S]*'test', 'train', 'val'"):
        build_dataset("voc", voc_root, "trainx")
    write_split(voc_root, "empty", [])
    with pytest.raises(DataError, match=r"empty\.txt: split list is empty"):
        build_dataset("voc", voc_root, "empty")
    write_split(voc_root, "ghost", ["a", "zz"])
    with pytest.raises(DataError, match=r"zz\.jpg"):
        build_dataset("voc", voc_root, "ghost")
    with pytest.raises(DataError, match="SegmentationClassAug"):
        build_dataset("voc", voc_root, "train_aug")


def test_corrupt_image_mismatch_unknown_class(voc_root):
    (voc_root / "JPEGImages" / "b.jpg").write_bytes(b"not a jpeg")
    ds = build_dataset("voc", voc_root, "train")
    with pytest.raises(DataError, match=r"b\.jpg: cannot decode"):
        ds[1]
    save_index_png(voc_root / "SegmentationClass" / "a.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(DataError, match=r"a\.png: mask is 16x13 but its image is 16x12"):
        ds[0]
    write_xml(voc_root / "Annotations" / "c.xml", ["dgo"])
    with pytest.raises(DataError, match=r"c\.xml: unknown class name\(s\) \['dgo'\]"):
        build_dataset("voc", voc_root, "test")[0]
    (voc_root / "Annotations" / "c.xml").unlink()
    with pytest.raises(DataError, match="neither a mask nor an XML"):
        build_dataset("voc", voc_root, "test")[0]
    save_index_png(voc_root / "SegmentationClass" / "a.png", np.full((H, W), 40, np.uint8))
    with pytest.raises(DataError, match=r"a\.png: mask holds class index 40"):
        build_dataset("voc", voc_root, "val")[0]


# --- SBD / train_aug ---------------------------------------------------------------------------

def write_sbd_mat(path, seg):
    """A ``cls/<id>.mat`` in SBD's structure: struct GTcls {Boundaries, Segmentation, CategoriesPresent}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bounds = np.empty((20, 1), dtype=object)
    for k in range(20):
        bounds[k, 0] = scipy.sparse.csc_matrix((seg == k + 1).astype(np.uint8))
    present = np.unique(seg[(seg > 0) & (seg < 255)]).astype(np.uint8)
    scipy.io.savemat(str(path), {"GTcls": {"Boundaries": bounds, "Segmentation": seg.astype(np.uint8),
                                           "CategoriesPresent": present}})


@pytest.fixture
def sbd_setup(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    ids = ["a", "b", "v1", "s1", "s2"]
    for k, i in enumerate(ids):
        write_jpg(voc / "JPEGImages" / f"{i}.jpg", seed=k)
    rng = np.random.default_rng(5)
    voc_masks = {i: rng.integers(0, 21, (H, W)).astype(np.uint8) for i in ["a", "b", "v1"]}
    voc_masks["a"][0, :] = 255
    for i, m in voc_masks.items():
        save_index_png(voc / "SegmentationClass" / f"{i}.png", m)
    write_split(voc, "train", ["a", "b"])
    write_split(voc, "val", ["v1"])
    sbd = tmp_path / "benchmark_RELEASE"
    sbd_masks = {i: rng.integers(0, 21, (H, W)).astype(np.uint8) for i in ["a", "v1", "s1", "s2"]}
    for i, m in sbd_masks.items():
        write_sbd_mat(sbd / "dataset" / "cls" / f"{i}.mat", m)
    (sbd / "dataset" / "train.txt").write_text("s1\na\nv1\n")
    (sbd / "dataset" / "val.txt").write_text("s2\n")
    return voc, sbd, voc_masks, sbd_masks


def test_load_sbd_mask_and_set_arithmetic(tmp_path):
    seg = np.arange(H * W, dtype=np.uint8).reshape(H, W) % 21
    write_sbd_mat(tmp_path / "x.mat", seg)
    np.testing.assert_array_equal(load_sbd_mask(tmp_path / "x.mat"), seg)
    assert derive_train_aug(["s1", "a", "v1"], ["s2"], ["a", "b"], ["v1"]) == ["a", "b", "s1", "s2"]
    (tmp_path / "bad.mat").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"bad\.mat: cannot read SBD"):
        load_sbd_mask(tmp_path / "bad.mat")


def test_prepare_voc_converts_and_resumes(sbd_setup, capsys):
    voc, sbd, voc_masks, sbd_masks = sbd_setup
    assert prepare_voc.main(["--voc", str(voc), "--sbd", str(sbd)]) == 0
    seg = voc / "ImageSets" / "Segmentation"
    assert (seg / "train_aug.txt").read_text().split() == ["a", "b", "s1", "s2"]
    aug = voc / "SegmentationClassAug"
    assert sorted(p.stem for p in aug.glob("*.png")) == ["a", "b", "s1", "s2", "v1"]
    np.testing.assert_array_equal(load_mask(aug / "s1.png"), sbd_masks["s1"])
    np.testing.assert_array_equal(load_mask(aug / "a.png"), voc_masks["a"])  # VOC's mask wins over SBD's
    np.testing.assert_array_equal(load_mask(aug / "v1.png"), voc_masks["v1"])
    assert (voc / "prepare_voc.yaml").is_file()
    assert "masks 3 from VOC, 2 from SBD" in capsys.readouterr().out

    ds = build_dataset("voc", voc, "train_aug")
    assert ds.ids == ["a", "b", "s1", "s2"]
    np.testing.assert_array_equal(ds[2]["mask"], sbd_masks["s1"])
    present = np.unique(sbd_masks["s2"])
    np.testing.assert_array_equal(np.flatnonzero(ds[3]["label"]), present[present > 0] - 1)

    save_index_png(aug / "s1.png", np.zeros((H, W), np.uint8))  # resume keeps finished masks ...
    prepare_voc.main(["--voc", str(voc), "--sbd", str(sbd / "dataset")])
    assert "5 kept" in capsys.readouterr().out and load_mask(aug / "s1.png").max() == 0
    prepare_voc.main(["--voc", str(voc), "--sbd", str(sbd), "--overwrite"])  # ... unless --overwrite
    np.testing.assert_array_equal(load_mask(aug / "s1.png"), sbd_masks["s1"])


def test_prepare_voc_separate_out_and_count_warning(sbd_setup, tmp_path, capsys, monkeypatch):
    voc, sbd, _, sbd_masks = sbd_setup
    monkeypatch.setattr(prepare_voc, "FULL_SIZES", {"voc_train": 2, "voc_val": 1, "sbd_train": 3, "sbd_val": 1})
    monkeypatch.setattr(prepare_voc, "TRAIN_AUG_SIZE", 5)
    out = tmp_path / "voc_aug"
    prepare_voc.main(["--voc", str(voc), "--sbd", str(sbd), "--out", str(out)])
    assert "train_aug has 4 ids, expected 5" in capsys.readouterr().err
    assert not (voc / "SegmentationClassAug").exists()
    ds = build_dataset("voc", out, "train_aug")
    np.testing.assert_array_equal(ds[3]["mask"], sbd_masks["s2"])
    assert build_dataset("voc", out, "val").ids == ["v1"]


def test_prepare_voc_errors_exit_2(sbd_setup, capsys):
    voc, sbd, _, _ = sbd_setup
    (sbd / "dataset" / "cls" / "s2.mat").unlink()
    with pytest.raises(SystemExit) as e:
        run_main(lambda: prepare_voc.main(["--voc", str(voc), "--sbd", str(sbd)]))
    assert e.value.code == 2 and "s2.mat: SBD annotation not found" in capsys.readouterr().err
    (voc / "JPEGImages" / "s1.jpg").unlink()
    with pytest.raises(DataError, match=r"s1\.jpg"):
        prepare_voc.main(["--voc", str(voc), "--sbd", str(sbd)])
    with pytest.raises(DataError, match="benchmark_RELEASE"):
        prepare_voc.main(["--voc", str(voc), "--sbd", str(voc)])


def test_label_from_mask_histogram_matches_unique(tmp_path):
    from wsss.data.base import label_from_mask

    rng = np.random.default_rng(0)
    for _ in range(5):
        m = rng.choice(np.array([0, 3, 7, 20, 255], np.uint8), size=(37, 53), p=[0.6, 0.1, 0.1, 0.1, 0.1])
        want = np.unique(m)
        want = want[(want != 0) & (want != 255)] - 1
        expected = np.zeros(20, np.float32)
        expected[want] = 1
        np.testing.assert_array_equal(label_from_mask(m, 20, tmp_path / "m.png"), expected)
        # a non-contiguous view and a wider integer type give the same label
        np.testing.assert_array_equal(label_from_mask(np.asfortranarray(m), 20, None), expected)
        np.testing.assert_array_equal(label_from_mask(m.astype(np.int32), 20, None), expected)
    with pytest.raises(DataError, match="class index 21"):
        label_from_mask(np.full((4, 4), 21, np.uint8), 20, tmp_path / "m.png")


def test_load_cam_fields_both_formats(tmp_path):
    from wsss.data.io import load_cam, save_cam

    rng = np.random.default_rng(0)
    cam, hr = rng.random((2, 3, 4)).astype(np.float32), rng.random((2, 9, 13)).astype(np.float32)
    save_cam(tmp_path / "a.npz", [4, 11], cam, hr)
    # P-NOC's .npy: background key 0 in front, classes shifted by one, float32
    np.save(tmp_path / "b.npy", {"keys": np.array([0, 5, 12]), "cam": cam, "hr_cam": hr})
    for name in ("a.npz", "b.npy"):
        both = load_cam(tmp_path / name)
        only_hr = load_cam(tmp_path / name, fields=("hr_cam",))
        only_st = load_cam(tmp_path / name, fields=("cam",))
        assert set(both) == {"keys", "cam", "hr_cam"} and set(only_hr) == {"keys", "hr_cam"}
        assert set(only_st) == {"keys", "cam"}
        for d in (both, only_hr, only_st):
            np.testing.assert_array_equal(d["keys"], [4, 11])
        np.testing.assert_allclose(only_hr["hr_cam"], both["hr_cam"])
        np.testing.assert_allclose(only_hr["hr_cam"], hr, atol=1e-3)  # fp16 on disk for .npz
    np.savez(tmp_path / "c.npz", keys=np.array([1]), cam=cam[:1])
    with pytest.raises(DataError, match="hr_cam"):
        load_cam(tmp_path / "c.npz")
    assert set(load_cam(tmp_path / "c.npz", fields=("cam",))) == {"keys", "cam"}
