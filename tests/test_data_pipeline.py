"""The training data pipeline's shortcuts give the samples of the plain computation: the decoded
PIL image kept until the first resize (against decode to an array, then a PIL resize from it),
cv2's flips, no mask read for labels-only samples, C2AM-H hints read in float16 by ``read_npz``."""

import random

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from wsss.data import LabelsOnly, build_dataset
from wsss.data.io import load_cam, load_image, read_npz, save_cam, save_index_png
from wsss.data.transforms import Compose, ResizeLong, build_train_transform, flip_lr
from wsss.errors import DataError
from wsss.saliency.datasets import CamHintDataset, build_saliency_transform

H, W = 45, 61  # odd sides: the resizes round
IDS = ("a", "b", "c")
SEEDS = range(6)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """VOC layout: noisy JPEGs, masks (class 3), 2-class CAM files of the image size."""
    root = tmp_path_factory.mktemp("pipeline") / "VOC2012"
    rng = np.random.default_rng(0)
    for sub in ("JPEGImages", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    for i in IDS:
        smooth = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3)).astype(np.uint8), (0, 0), 2)
        noisy = np.clip(smooth + rng.integers(-20, 21, (H, W, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(root / "JPEGImages" / f"{i}.jpg", quality=90)
        mask = np.zeros((H, W), np.uint8)
        mask[5:30, 10:40] = 3
        save_index_png(root / "SegmentationClass" / f"{i}.png", mask)
        hr = rng.random((2, H, W)).astype(np.float32)
        save_cam(root / "cams" / f"{i}.npz", [2, 6], hr[:, ::4, ::4], hr)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(IDS) + "\n")
    return root


def decoded(root, image_id):
    """The image as the array pipeline had it: decoded straight to an array."""
    return np.asarray(Image.open(root / "JPEGImages" / f"{image_id}.jpg").convert("RGB"))


def pil_resize(image, size):
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))


def assert_same(got, want):
    assert got["id"] == want["id"] and got["mask"] is None
    assert torch.equal(got["image"], want["image"]) and torch.equal(got["label"], want["label"])
    assert got["maps"].keys() == want["maps"].keys()
    for k in want["maps"]:
        assert torch.equal(got["maps"][k], want["maps"][k]), k


def test_cam_samples_equal_the_array_pipeline(root):
    aug = {"resize_long": [30, 50], "crop": 40, "hflip": True}
    ds = LabelsOnly(build_dataset("voc", root, "train"), build_train_transform(aug))
    resize, rest = ds.transform.transforms[0], Compose(ds.transform.transforms[1:])
    assert isinstance(resize, ResizeLong)
    for seed in SEEDS:
        for index, image_id in enumerate(IDS):
            random.seed(seed)
            got = ds[index]
            random.seed(seed)
            scale = random.randint(30, 50) / W  # ResizeLong's draw; W is the long side
            image = pil_resize(decoded(root, image_id), (int(round(W * scale)), int(round(H * scale))))
            label = ds.dataset.load_label(image_id)
            want = rest({"id": image_id, "image": image, "label": label, "mask": None, "maps": {}})
            want["mask"] = None
            assert_same(got, want)


def test_ccam_samples_equal_the_array_pipeline(root):
    aug = {"resize_square": 40, "crop": 32, "hflip": True}
    base = build_dataset("voc", root, "train")
    ds = LabelsOnly(CamHintDataset(base, root / "cams"), build_saliency_transform(aug))
    rest = Compose(ds.transform.transforms[1:])
    for seed in SEEDS:
        for index, image_id in enumerate(IDS):
            random.seed(seed)
            got = ds[index]
            with np.load(root / "cams" / f"{image_id}.npz") as z:
                hint = z["hr_cam"].astype(np.float32).max(0)
            random.seed(seed)  # the square resize draws nothing: the rest replays from the same state
            want = rest({"id": image_id, "image": pil_resize(decoded(root, image_id), (40, 40)),
                         "label": base.load_label(image_id), "mask": None,
                         "maps": {"hint": cv2.resize(hint, (40, 40), interpolation=cv2.INTER_LINEAR)}})
            want["mask"] = None
            assert_same(got, want)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int64, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 9)])
def test_flip_lr_is_the_reversed_copy(dtype, shape):
    a = (np.random.default_rng(0).random(shape) * 250).astype(dtype)
    for arr in (a, a[:, 1:], np.asfortranarray(a)):
        got = flip_lr(arr)
        assert got.dtype == arr.dtype and got.flags.c_contiguous and np.array_equal(got, arr[:, ::-1])


def test_the_pil_image_never_leaves_the_pipeline(root):
    base = build_dataset("voc", root, "train")
    assert isinstance(base.load_sample(0)["image"], Image.Image)
    image = base[0]["image"]  # no transform: the sample contract's array
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape == (H, W, 3)
    np.testing.assert_array_equal(image, load_image(root / "JPEGImages" / "a.jpg"))
    np.testing.assert_array_equal(image, decoded(root, "a"))
    seen = []
    base.transform = lambda s: seen.append(type(s["image"])) or s  # not a Compose: arrays
    base[0]
    # a ResizeLong that keeps the size hands the PIL image on: Compose converts it for the next step
    base.transform = Compose([ResizeLong(W), lambda s: seen.append(type(s["image"])) or s])
    assert isinstance(base[0]["image"], np.ndarray)
    assert seen == [np.ndarray, np.ndarray]


def test_labels_only_wants_a_dataset_without_transform(root):
    with pytest.raises(ValueError, match="build the dataset without one"):
        LabelsOnly(build_dataset("voc", root, "train", transform=build_train_transform({})))


def test_labels_only_reads_no_mask(root, monkeypatch):
    base = build_dataset("voc", root, "train")
    labels = [base.load_label(i) for i in IDS]  # known from here on
    monkeypatch.setattr(base, "load_gt_mask", lambda i: pytest.fail("mask read"))
    ds = LabelsOnly(base, build_train_transform({"crop": 16}))
    for index, label in enumerate(labels):
        s = ds[index]
        assert s["mask"] is None and np.array_equal(s["label"].numpy(), label)


def test_read_npz_equals_np_load(root, tmp_path):
    path = root / "cams" / "a.npz"
    got = read_npz(path, ("keys", "cam", "hr_cam", "absent"))
    with np.load(path) as z:
        assert sorted(got) == sorted(z.files)
        for k in z.files:
            assert got[k].dtype == z[k].dtype and np.array_equal(got[k], z[k]) and got[k].flags.writeable
    np.savez_compressed(tmp_path / "c.npz", keys=np.array([4]), hr_cam=np.ones((1, 3, 2), np.float16))
    np.savez(tmp_path / "f.npz", keys=np.array([4]), hr_cam=np.asfortranarray(np.arange(12.0).reshape(1, 3, 4)))
    for name in ("c", "f"):
        with np.load(tmp_path / f"{name}.npz") as z:
            assert all(np.array_equal(read_npz(tmp_path / f"{name}.npz", z.files)[k], z[k]) for k in z.files)


def test_corrupt_cam_files_are_data_errors(root, tmp_path):
    data = bytearray((root / "cams" / "a.npz").read_bytes())
    flipped = tmp_path / "flipped.npz"
    data[len(data) // 2] ^= 0xFF  # inside hr_cam's data
    flipped.write_bytes(data)
    with pytest.raises(DataError, match=r"flipped\.npz: cannot read CAM file \(Bad CRC-32"):
        load_cam(flipped)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[:200])
    with pytest.raises(DataError, match=r"truncated\.npz: cannot read CAM file"):
        load_cam(truncated)
    np.savez(tmp_path / "obj.npz", keys=np.array([1, None], dtype=object), hr_cam=np.zeros((1, 2, 2)))
    with pytest.raises(DataError, match="Object arrays cannot be loaded"):
        load_cam(tmp_path / "obj.npz")
