"""Training sets of the saliency stage: a dataset plus per-pixel ``maps`` read from another stage.

- :class:`CamHintDataset` (C2AM-H): ``maps["hint"]`` = max over the present classes of the
  image-size CAMs (``hr_cam``) of ``<cam_dir>/<id>.npz`` (or P-NOC ``.npy``).
- :class:`SaliencyTargetDataset` (PoolNet): ``maps["saliency"]`` = ``<sal_dir>/<id>.png`` / 255
  (any folder of 0..255 gray PNGs: C2AM-H masks or saliency made elsewhere) and
  ``maps["valid"]`` = 1, which crop padding turns into 0 so padded pixels carry no loss.

The maps are attached before the transform, so crops, flips and resizes move them with the image.
"""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data.io import find_cam, load_cam
from ..data.transforms import Compose, build_train_transform, resize_sample
from ..errors import DataError


def hint_from_cam(cam, shape, path=None):
    """Max over the CAM file's present classes of ``hr_cam`` (float32 (H, W)); zeros without classes."""
    hr = cam["hr_cam"]
    if hr.ndim != 3 or (hr.shape[0] and hr.shape[1:] != tuple(shape)):
        raise DataError(f"hr_cam has shape {hr.shape}, expected (K, {shape[0]}, {shape[1]}) for this image",
                        path=path, fix="re-run tools/infer_cam.py on this dataset and split")
    if hr.shape[0] == 0:
        return np.zeros(shape, np.float32)
    return hr.max(0).astype(np.float32)


def load_saliency(path, shape=None, of="its image"):
    """Read a 0..255 gray saliency PNG as uint8 (H, W); RGB(A) PNGs use their first channel.

    With ``shape`` (H, W), a map of another size is a DataError naming ``of`` (what it must match)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("saliency map not found", path=path,
                        fix="run tools/infer_saliency.py for this split, or point to a folder of <id>.png maps")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"cannot decode saliency map ({e})", path=path, fix="re-create this file") from None
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        raise DataError(f"saliency map has dtype {arr.dtype}, expected 8-bit gray 0..255", path=path,
                        fix="save it as an 8-bit gray PNG")
    if shape is not None and arr.shape != tuple(shape):
        raise DataError(f"saliency map is {arr.shape[1]}x{arr.shape[0]} but {of} is {shape[1]}x{shape[0]} (W x H)",
                        path=path, fix="write saliency maps at the image's original size")
    return arr


def _missing(ids, path_of, what, fix):
    for i in ids:
        p = path_of(i)
        if not Path(p).is_file():
            raise DataError(f"{what} for {i!r} not found", path=p, fix=fix)


class _MapDataset:
    """``base`` (built without transform) + one or more maps per sample + ``transform``."""

    def __init__(self, base, transform=None):
        self.base = base
        self.transform = transform
        self.ids = base.ids
        self.class_names = base.class_names
        self.num_classes = base.num_classes
        self.root = base.root

    def __len__(self):
        return len(self.base)

    def add_maps(self, sample):
        raise NotImplementedError

    def __getitem__(self, index):
        sample = dict(self.base[index])
        sample["maps"] = {**(sample.get("maps") or {}), **self.add_maps(sample)}
        return self.transform(sample) if self.transform is not None else sample


class CamHintDataset(_MapDataset):
    """Samples with ``maps["hint"]``: the max foreground CAM of the image (C2AM-H)."""

    def __init__(self, base, cam_dir, transform=None):
        super().__init__(base, transform)
        self.cam_dir = Path(cam_dir)
        if not self.cam_dir.is_dir():
            raise DataError("CAM folder not found", path=self.cam_dir,
                            fix="run tools/infer_cam.py on the training split first (method.cam_dir)")
        _missing(self.ids, lambda i: find_cam(self.cam_dir, i), "CAM file",
                 "run tools/infer_cam.py on the same split (it resumes), or fix method.cam_dir")

    def add_maps(self, sample):
        path = find_cam(self.cam_dir, sample["id"])
        return {"hint": hint_from_cam(load_cam(path, fields=("hr_cam",)), sample["image"].shape[:2], path)}


class SaliencyTargetDataset(_MapDataset):
    """Samples with ``maps["saliency"]`` in [0, 1] and ``maps["valid"]`` (PoolNet)."""

    def __init__(self, base, sal_dir, transform=None):
        super().__init__(base, transform)
        self.sal_dir = Path(sal_dir)
        if not self.sal_dir.is_dir():
            raise DataError("saliency folder not found", path=self.sal_dir,
                            fix="run tools/infer_saliency.py --method ccam on the training split (method.sal_dir)")
        _missing(self.ids, lambda i: self.sal_dir / f"{i}.png", "saliency map",
                 "run tools/infer_saliency.py on the same split (it resumes), or fix method.sal_dir")

    def add_maps(self, sample):
        path = self.sal_dir / f"{sample['id']}.png"
        sal = load_saliency(path, shape=sample["image"].shape[:2])
        return {"saliency": sal.astype(np.float32) / 255.0, "valid": np.ones(sal.shape, np.float32)}


class SquareResize:
    """Resize image, mask and maps to ``size`` x ``size`` (C2AM's training resize)."""

    def __init__(self, size):
        self.size = int(size)

    def __call__(self, sample):
        return resize_sample(sample, self.size, self.size)


def build_saliency_transform(aug_cfg=None):
    """The data layer's training pipeline, optionally preceded by a square resize
    (``resize_square: 515`` then ``crop: 448`` is P-NOC's C2AM recipe)."""
    cfg = dict(aug_cfg or {})
    square = cfg.pop("resize_square", None)
    base = build_train_transform(cfg)
    return Compose(([SquareResize(square)] if square else []) + base.transforms)
