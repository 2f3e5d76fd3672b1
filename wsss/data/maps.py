"""Per-image maps attached to any dataset before its transform (saliency, index maps, CAM hints).

    ds = build_dataset(name, root, "train", transform=build_train_transform(aug))
    ds = attach_maps(ds, PngMap(sal_dir, "saliency"), ValidMap())
    ds[0]["maps"]   # {"saliency": float32 (H, W), "valid": float32 (H, W)} after the crop

:class:`MapDataset` reads the wrapped dataset's sample *before* its transform, adds one entry of
``sample["maps"]`` per source, then applies the transform, so every geometric op moves the maps
with the image. A map's dtype says how it moves (``wsss.data.transforms.is_index_map``): float
maps bilinearly with padding 0, integer (index) maps nearest with padding 255. Sources:

- :class:`PngMap`: ``<folder>/<id>.png``; ``kind="float"``: 8-bit gray 0..255 -> float32 / 255
  (saliency); ``kind="index"``: 8/16-bit integer ids kept as integers (superpixels, labels);
- :class:`CamHintMap`: the max over the present classes of a CAM file's ``hr_cam`` (C2AM-H);
- :class:`ValidMap`: ones, which padding turns into 0 (losses skip padded pixels with it).

Every file is checked when the dataset is built (a missing one is a DataError naming it) and
every map's size when it is read (it must be the image's original size).
"""

import functools
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, DataError
from .io import find_cam, image_hw, load_cam
from .transforms import apply_transform


def _read_png(path, what, fix):
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found", path=path, fix=fix)
    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"cannot decode {what} ({e})", path=path, fix="re-create this file") from None


def _check_shape(arr, shape, path, what, of):
    if shape is not None and arr.shape[:2] != tuple(shape):
        raise DataError(f"{what} is {arr.shape[1]}x{arr.shape[0]} but {of} is {shape[1]}x{shape[0]} (W x H)",
                        path=path, fix=f"write {what}s at the image's original size")
    return arr


def load_gray_map(path, shape=None, of="its image", what="map", fix="check the folder of <id>.png maps"):
    """A 0..255 gray PNG as uint8 (H, W); RGB(A) PNGs use their first channel.

    With ``shape`` (H, W), a map of another size is a DataError naming ``of`` (what it must match)."""
    arr = _read_png(path, what, fix)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        raise DataError(f"{what} has dtype {arr.dtype}, expected 8-bit gray 0..255", path=path,
                        fix="save it as an 8-bit gray PNG")
    return _check_shape(arr, shape, path, what, of)


def load_index_map(path, shape=None, of="its image", what="index map", fix="check the folder of <id>.png maps"):
    """A single-channel integer PNG (8-bit gray or palette, 16-bit gray) as its integer ids (H, W)."""
    arr = _read_png(path, what, fix)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{what} has shape {arr.shape} and dtype {arr.dtype}, expected one channel of integer ids",
                        path=path, fix="save ids as a gray (8/16-bit) or palette PNG")
    return _check_shape(arr, shape, path, what, of)


def hint_from_cam(cam, shape, path=None):
    """Max over the CAM file's present classes of ``hr_cam`` (float32 or float16, as
    ``load_cam(..., dtype=None)`` reads it) as float32 (H, W); zeros without classes."""
    hr = cam["hr_cam"]
    if hr.ndim != 3 or (hr.shape[0] and hr.shape[1:] != tuple(shape)):
        raise DataError(f"hr_cam has shape {hr.shape}, expected (K, {shape[0]}, {shape[1]}) for this image",
                        path=path, fix="re-run tools/infer_cam.py on this dataset and split")
    if hr.shape[0] == 0:
        return np.zeros(shape, np.float32)
    import torch  # its float16 -> float32 cast is ~10x numpy's; both exact

    hr = np.require(hr, hr.dtype.newbyteorder("="), requirements="W")  # what torch.from_numpy takes
    # pairwise maxima: amax(0) is ~8x slower for one class, the usual case
    return functools.reduce(torch.maximum, torch.from_numpy(hr).to(torch.float32, copy=True).unbind(0)).numpy()


class MapSource:
    """One map per image from a folder. Subclasses set ``name`` (its key in ``sample["maps"]``),
    ``folder``, ``what`` (for errors) and ``fix``, and implement ``path`` and ``read``."""

    name = folder = None
    what = "map"
    fix = "check the folder"

    def path(self, image_id):
        raise NotImplementedError

    def read(self, path, shape):
        """The map of ``path`` for an image of ``shape`` (H, W): an array (H, W) or (H, W, K)."""
        raise NotImplementedError

    def check(self, ids):
        """DataError for a missing folder or the first image without its file."""
        if not Path(self.folder).is_dir():
            raise DataError(f"{self.what} folder not found", path=self.folder, fix=self.fix)
        for i in ids:
            p = self.path(i)
            if not Path(p).is_file():
                raise DataError(f"{self.what} file for {i!r} not found", path=p, fix=self.fix)

    def __call__(self, sample):
        return {self.name: self.read(self.path(sample["id"]), image_hw(sample["image"]))}


class PngMap(MapSource):
    """``<folder>/<id>.png`` as ``maps[name]``: ``kind="float"`` (gray 0..255 -> float32 in [0, 1],
    bilinear) or ``kind="index"`` (integer ids, nearest, padding 255)."""

    KINDS = ("float", "index")

    def __init__(self, folder, name, kind="float", what=None, fix=None):
        if kind not in self.KINDS:
            raise ConfigError(f"unknown map kind {kind!r}", fix=f"use one of {list(self.KINDS)}")
        self.folder, self.name, self.kind = Path(folder), name, kind
        self.what = what or f"{name} map"
        self.fix = fix or f"write <id>.png for every image of the split into {self.folder}"

    def path(self, image_id):
        return self.folder / f"{image_id}.png"

    def read(self, path, shape):
        if self.kind == "index":
            return load_index_map(path, shape, what=self.what, fix=self.fix)
        return load_gray_map(path, shape, what=self.what, fix=self.fix).astype(np.float32) / 255.0


class CamHintMap(MapSource):
    """``maps[name]``: the max foreground CAM (``hr_cam``) of ``<cam_dir>/<id>.npz`` (or ``.npy``)."""

    def __init__(self, cam_dir, name="hint", what="CAM", fix=None):
        self.folder, self.name, self.what = Path(cam_dir), name, what
        self.fix = fix or "run tools/infer_cam.py on the same split (it resumes), or fix the CAM folder"

    def path(self, image_id):
        return find_cam(self.folder, image_id)

    def read(self, path, shape):
        return hint_from_cam(load_cam(path, fields=("hr_cam",), dtype=None), shape, path)


class ValidMap(MapSource):
    """``maps[name]`` = 1 (float32) at every pixel of the image; padding turns it into 0."""

    def __init__(self, name="valid"):
        self.name = name

    def check(self, ids):
        pass

    def __call__(self, sample):
        return {self.name: np.ones(image_hw(sample["image"]), np.float32)}


def raw_sample(dataset, index, with_mask=True):
    """``dataset``'s sample before its transform (``load_sample``, its image still the decoded
    PIL image, or ``dataset[index]`` when it has no transform); ``with_mask=False`` lets
    ``load_sample`` skip the mask."""
    if hasattr(dataset, "load_sample"):
        return dataset.load_sample(index, with_mask=with_mask)
    if getattr(dataset, "transform", None) is None:
        return dataset[index]
    raise TypeError(f"{type(dataset).__name__} has a transform but no load_sample(index): maps attached "
                    "after its transform would not be aligned")


class MapDataset:
    """``base`` with ``sources``' maps added to each sample before ``transform`` (default: the
    base's own transform). Other attributes (``ids``, ``class_names``, ...) are the base's."""

    def __init__(self, base, sources, transform=None):
        self.base = base
        self.sources = list(sources)
        self.transform = transform if transform is not None else getattr(base, "transform", None)
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"two map sources write the same key: {names}", fix="give each source its own name")
        for s in self.sources:
            s.check(base.ids)

    def __getattr__(self, name):
        if name == "base":  # not yet set (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.base, name)

    def __len__(self):
        return len(self.base)

    def load_sample(self, index, with_mask=True):
        """The base's untransformed sample (PIL image) with the sources' maps added."""
        sample = dict(raw_sample(self.base, index, with_mask))
        maps = dict(sample.get("maps") or {})
        for source in self.sources:
            maps.update(source(sample))
        sample["maps"] = maps
        return sample

    def __getitem__(self, index):
        return apply_transform(self.transform, self.load_sample(index))


def attach_maps(dataset, *sources, transform=None):
    """``dataset`` whose samples carry the maps of ``sources`` (:class:`MapSource`), attached
    before the transform (``transform``, default the dataset's own)."""
    return MapDataset(dataset, sources, transform)
