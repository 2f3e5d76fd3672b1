"""Find bad data before training starts, not hours later in a data-loader worker.

:func:`check_split` runs once at the start of every training tool (``wsss.stage.train_stage``):

- every image label is derived once (from the mask or the XML annotation, as the dataset does)
  and every ground-truth mask's size is compared with its image's header (no image decoding),
  so a mask with an unknown class value or of the wrong size fails at start-up, naming the file;
  the labels are cached in ``<exp>/labels/<split>.json`` keyed by a hash of the split's ids (and
  the class names), so the next start reads them instead of every mask;
- ``decode=True`` (the tools' ``--check-data``) also decodes every image (a corrupt or
  truncated JPEG fails here, not in an epoch).

Each pass shows a tqdm bar; the first bad file raises its :class:`~wsss.errors.DataError`.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import DataError
from .base import Dataset, multi_hot
from .io import load_image, write_json

CACHE_VERSION = 1


def base_dataset(dataset):
    """The :class:`~wsss.data.base.Dataset` under wrappers (``LabelsOnly.dataset``,
    ``MapDataset.base``), or ``None``."""
    seen = 0
    while not isinstance(dataset, Dataset) and seen < 16:
        inner = vars(dataset).get("dataset", vars(dataset).get("base")) if hasattr(dataset, "__dict__") else None
        if inner is None:
            return None
        dataset, seen = inner, seen + 1
    return dataset if isinstance(dataset, Dataset) else None


def split_key(ds):
    """Hash of what the labels depend on: the split list's ids, the class names, the reader."""
    h = hashlib.sha256()
    h.update("\n".join(ds.ids).encode())
    h.update("\n".join(ds.class_names).encode())
    h.update(f"{type(ds).__name__} {getattr(ds, 'label_source', '')} {getattr(ds, 'seg_dir', '')}".encode())
    return f"{CACHE_VERSION}-{h.hexdigest()[:32]}"


def _image_size(path):
    """(H, W) from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (OSError, SyntaxError) as e:
        raise DataError(f"cannot read image header ({e})", path=path, fix="re-download or remove this file") from None


def derive_labels(ds, desc="labels"):
    """``{id: [0-based classes]}`` of every image of ``ds``, each ground-truth mask checked
    (class values, size against its image)."""
    out = {}
    for image_id in tqdm(ds.ids, desc=f"{desc} {ds.split}", dynamic_ncols=True, mininterval=1.0, leave=False):
        mask = ds.load_gt_mask(image_id)
        if mask is not None:
            h, w = _image_size(ds.image_path(image_id))
            if mask.shape != (h, w):
                raise DataError(f"mask is {mask.shape[1]}x{mask.shape[0]} but its image is {w}x{h} (W x H)",
                                path=ds.gt_mask_path(image_id), fix="regenerate the mask at the image's size")
        label = ds.load_label(image_id, mask)
        out[image_id] = np.flatnonzero(label).tolist()
    return out


def cached_labels(ds, cache_dir):
    """The labels of ``ds`` from ``cache_dir/<split>.json`` when its key matches, else derived
    (every mask checked) and written there; they are also handed to the dataset (no mask is
    read again for a label)."""
    key = split_key(ds)
    path = None if cache_dir is None else Path(cache_dir) / f"{ds.split}.json"
    labels = None
    if path is not None and path.is_file():
        try:
            saved = json.loads(path.read_text())
            if saved.get("key") == key and set(saved.get("labels", {})) == set(ds.ids):
                labels = saved["labels"]
        except (ValueError, AttributeError):
            labels = None  # an unreadable cache is rebuilt
    if labels is None:
        labels = derive_labels(ds)
        if path is not None:
            write_json(path, {"key": key, "split": ds.split, "labels": labels})
    store = getattr(ds, "_labels", None)
    if isinstance(store, dict):
        for image_id, classes in labels.items():
            store.setdefault(image_id, multi_hot(classes, ds.num_classes))
    return labels


def decode_images(ds):
    """Decode every image of ``ds`` (``--check-data``); the first that fails raises DataError."""
    for image_id in tqdm(ds.ids, desc=f"decode {ds.split}", dynamic_ncols=True, mininterval=1.0, leave=False):
        load_image(ds.image_path(image_id))


def check_split(dataset, cache_dir=None, decode=False):
    """Check the training set ``dataset`` (wrappers allowed) before training: labels (cached in
    ``cache_dir``) and masks, and with ``decode`` every image. Returns the number of images
    checked (0 when ``dataset`` is not a file-backed dataset)."""
    ds = base_dataset(dataset)
    if ds is None:
        return 0
    cached_labels(ds, cache_dir)
    if decode:
        decode_images(ds)
    return len(ds.ids)
