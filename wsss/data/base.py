"""Pieces shared by every dataset reader: list files, class names, label vectors, the sample dict.

A dataset subclasses :class:`Dataset` and implements ``image_path(id)``, ``gt_mask_path(id)``
(``None`` when the image has no ground-truth mask) and ``load_label(id)``; the base class
builds the sample dict of CONTRIBUTING.md, honours ``mask_dir`` (masks of another stage
replace the ground truth) and checks image/mask sizes. Until its transform, a sample holds the
decoded PIL image (:func:`wsss.data.transforms.apply_transform`).
"""

from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError
from ..registry import Registry
from .io import image_hw, load_mask, open_image
from .transforms import apply_transform

DATASETS = Registry("dataset")


def read_list(path, what="split list", fix=None):
    """Non-empty, non-comment lines of a text file, stripped; DataError if the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found", path=path, fix=fix or "check the data root and the split name")
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def read_ids(path, fix=None):
    """Image ids of a split list; accepts ``id``, ``id 1`` and ``/JPEGImages/id.jpg /Seg.../id.png`` lines."""
    ids = [Path(ln.split()[0]).stem for ln in read_list(path, fix=fix)]
    if not ids:
        raise DataError("split list is empty", path=path, fix="list one image id per line")
    return ids


def read_class_names(path):
    """Foreground class names, one per line (background excluded)."""
    names = read_list(path, what="class name list", fix="write one foreground class name per line")
    if len(set(names)) != len(names):
        raise DataError("class name list has duplicates", path=path, fix="keep each class name once")
    if "background" in (n.lower() for n in names[:1]):
        raise DataError("class name list starts with 'background'", path=path,
                        fix="list foreground classes only; background is index 0 of the masks")
    return names


def multi_hot(indices, num_classes):
    """float32 (C,) vector with ones at the given 0-based foreground indices."""
    y = np.zeros(num_classes, dtype=np.float32)
    y[list(indices)] = 1.0
    return y


def label_from_mask(mask, num_classes, path):
    """Multi-hot label of the classes present in an index mask (0 = background, 255 = void)."""
    if mask.dtype == np.uint8 and mask.ndim == 2:  # a histogram: ~10x faster than np.unique
        values = np.flatnonzero(cv2.calcHist([np.ascontiguousarray(mask)], [0], None, [256], [0, 256]).ravel())
    else:
        values = np.unique(mask)
    values = values[(values != 0) & (values != 255)]
    if values.size and values.max() > num_classes:
        raise DataError(f"mask holds class index {int(values.max())} but the dataset has {num_classes} classes",
                        path=path, fix="check class_names.txt or regenerate the mask")
    return multi_hot(values.astype(np.int64) - 1, num_classes)


class Dataset:
    """Base class: ``ids``, ``class_names``, ``num_classes``, ``root``, ``__getitem__`` -> sample dict."""

    def __init__(self, root, split, class_names, ids, transform=None, mask_dir=None, split_path=None):
        self.root = Path(root)
        self.split = split
        self.class_names = list(class_names)
        self.ids = list(ids)
        self.transform = transform
        self.mask_dir = None if mask_dir is None else Path(mask_dir)
        if not self.ids:
            raise DataError(f"split {split!r} has no images", path=split_path or self.root,
                            fix="list at least one image id in the split")
        if self.mask_dir is not None and not self.mask_dir.is_dir():
            raise DataError("mask directory not found", path=self.mask_dir,
                            fix="run the stage that writes these masks, or fix the path")
        self._check_images(split_path)

    @property
    def num_classes(self):
        return len(self.class_names)

    def __len__(self):
        return len(self.ids)

    def __repr__(self):
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"n={len(self)}, C={self.num_classes})")

    # -- to implement --------------------------------------------------------------------------
    def image_path(self, image_id):
        raise NotImplementedError

    def gt_mask_path(self, image_id):
        """Ground-truth mask path, or ``None`` when this image has none."""
        raise NotImplementedError

    def load_label(self, image_id, gt_mask=None):
        """Multi-hot float32 (C,) image label; ``gt_mask`` is passed when already loaded."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------
    def _check_images(self, split_path):
        missing = [i for i in self.ids if not self.image_path(i).is_file()]
        if missing:
            where = f" listed in {split_path}" if split_path else ""
            raise DataError(f"{len(missing)} image(s){where} not found, e.g. {missing[0]!r}",
                            path=self.image_path(missing[0]),
                            fix="check the data root, or remove these ids from the split list")

    def mask_path(self, image_id):
        """Path of the mask a sample uses: ``mask_dir/<id>.png`` if given, else the ground truth."""
        if self.mask_dir is not None:
            return self.mask_dir / f"{image_id}.png"
        return self.gt_mask_path(image_id)

    def load_gt_mask(self, image_id):
        """Ground-truth uint8 mask (H, W), or ``None`` when the image has none."""
        p = self.gt_mask_path(image_id)
        return None if p is None else load_mask(p)

    def load_mask(self, image_id):
        """The sample's mask: from ``mask_dir`` if given (must exist), else the ground truth or ``None``."""
        if self.mask_dir is None:
            return self.load_gt_mask(image_id)
        p = self.mask_path(image_id)
        if not p.is_file():
            raise DataError(f"mask for {image_id!r} not found in mask_dir", path=p,
                            fix="run the stage that writes these masks for this split (or pass --overwrite to redo it)")
        return load_mask(p)

    def __getitem__(self, index):
        return apply_transform(self.transform, self.load_sample(index))

    def load_sample(self, index, with_mask=True):
        """The sample dict of ``index`` before the transform (what wrappers such as
        :class:`wsss.data.maps.MapDataset` extend); its image is the decoded PIL image.
        ``with_mask=False``: ``mask`` is None and no mask is read (but for a label not yet
        known)."""
        image_id = self.ids[index]
        image = open_image(self.image_path(image_id))
        gt = mask = None
        if with_mask and self.mask_dir is None:
            gt = mask = self.load_gt_mask(image_id)
        elif with_mask:
            mask = self.load_mask(image_id)
        h, w = image_hw(image)
        if mask is not None and mask.shape != (h, w):
            raise DataError(f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {w}x{h} (W x H)",
                            path=self.mask_path(image_id), fix="regenerate the mask at the image's size")
        return {"id": image_id, "image": image, "label": self.load_label(image_id, gt), "mask": mask, "maps": {}}
