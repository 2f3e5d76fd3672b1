"""Datasets (``voc``, ``synthetic``, ``coco``, ``folder``), root detection and batch collation.

    ds = build_dataset(detect_dataset(root), root, "train", transform=build_train_transform(cfg))
    sample = ds[0]   # {"id", "image", "label", "mask", "maps"}  (CONTRIBUTING.md)
"""

from pathlib import Path

from ..errors import DataError
from .base import DATASETS, Dataset
from .labels_only import LabelsOnly
from . import coco, folder, voc  # noqa: F401  (register the datasets)

__all__ = ["DATASETS", "Dataset", "LabelsOnly", "build_dataset", "detect_dataset", "collate"]


def build_dataset(name, root, split, transform=None, mask_dir=None, **kwargs):
    """Instantiate the dataset registered as ``name`` (extra keyword arguments go to its class)."""
    return DATASETS.get(name)(root, split, transform=transform, mask_dir=mask_dir, **kwargs)


def detect_dataset(root):
    """Dataset name for a root: ``coco`` (prepared), ``synthetic``, ``voc`` or ``folder``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError("dataset root not found", path=root, fix="check the path (data.root in the config)")
    if voc.is_voc_layout(root):
        if (root / coco.LABELS_FILE).is_file():
            return "coco"
        return "synthetic" if (root / "class_names.txt").is_file() else "voc"
    if folder.is_folder_layout(root):
        return "folder"
    raise DataError(
        "unrecognised dataset layout", path=root,
        fix="expected JPEGImages/ + ImageSets/Segmentation/ (VOC layout; COCO via tools/prepare_coco.py) "
            "or images/ + labels.txt|labels.csv + class_names.txt (folder layout)")


def collate(samples):
    """Batch sample dicts: equal-shape arrays/tensors are stacked into tensors, the rest kept as lists.

    ``id`` becomes a list of str; ``mask`` stays a list when some masks are ``None`` or sizes
    differ; ``maps`` is collated key by key.
    """
    return _collate(list(samples))


def _collate(values):
    import numpy as np
    import torch

    first = values[0]
    if isinstance(first, dict):
        return {k: _collate([v[k] for v in values]) for k in first}
    same_shape = all(getattr(v, "shape", None) == first.shape for v in values) if hasattr(first, "shape") else False
    if isinstance(first, np.ndarray) and same_shape and all(isinstance(v, np.ndarray) for v in values):
        return torch.from_numpy(np.stack(values))
    if isinstance(first, torch.Tensor) and same_shape and all(isinstance(v, torch.Tensor) for v in values):
        return torch.stack(values)
    if isinstance(first, (int, float)) and not isinstance(first, bool) and \
            all(type(v) is type(first) for v in values):
        return torch.tensor(values)
    return list(values)
