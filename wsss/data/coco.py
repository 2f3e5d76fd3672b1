"""COCO 2014 as a prepared VOC-layout root, and the instance -> index-mask conversion behind it.

``tools/prepare_coco.py --coco ROOT --out DIR`` writes::

    DIR/JPEGImages/<id>.jpg                 symlinks to ROOT/{train,val}2014/<file> (or copies: --images copy)
    DIR/SegmentationClass/<id>.png          uint8 index PNG, VOC palette, 0 = bg, 1..80, 255 = crowd
    DIR/ImageSets/Segmentation/{train,val}.txt
    DIR/class_names.txt                     the 80 names, in category-id order
    DIR/cls_labels.json                     {id: [0-based class indices]} image-level labels

``<id>`` is the image file's stem (``COCO_train2014_000000000009``), unique across splits.

Mask rule (deterministic): the 80 categories map to 1..80 in increasing category id. Non-crowd
instances are painted in decreasing pixel area (ties: increasing annotation id), so a smaller
object lying on a larger one stays visible. Crowd regions (``iscrowd=1``) become 255 (ignore)
where no non-crowd instance was painted. Image labels list the category of every annotation of
the image, crowd ones included (the class is present even where its pixels are ignored).
"""

import contextlib
import io as _io
import json
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import DATASETS, multi_hot
from .voc import VOCLayoutDataset

LABELS_FILE = "cls_labels.json"


@DATASETS.register("coco")
class COCODataset(VOCLayoutDataset):
    """A root written by ``tools/prepare_coco.py``; labels from ``cls_labels.json``."""

    require_class_names = True

    def __init__(self, root, split, transform=None, mask_dir=None, label_source="mask"):
        path = Path(root) / LABELS_FILE
        if not path.is_file():
            raise DataError("COCO image-label file not found", path=path,
                            fix="prepare the root with tools/prepare_coco.py --coco <COCO> --out <root>")
        try:
            self._coco_labels = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON ({e})", path=path, fix="rerun tools/prepare_coco.py --overwrite") from None
        super().__init__(root, split, transform, mask_dir, label_source)

    def load_label(self, image_id, gt_mask=None):
        if image_id not in self._coco_labels:
            return super().load_label(image_id, gt_mask)
        indices = self._coco_labels[image_id]
        if any(not 0 <= i < self.num_classes for i in indices):
            raise DataError(f"label of {image_id!r} has a class index outside 0..{self.num_classes - 1}",
                            path=self.root / LABELS_FILE, fix="rerun tools/prepare_coco.py --overwrite")
        return multi_hot(indices, self.num_classes)


# --- conversion helpers (tools/prepare_coco.py) -----------------------------------------------

def load_coco(json_path):
    """A ``pycocotools.coco.COCO`` index of an instances json (its progress prints silenced)."""
    from pycocotools.coco import COCO

    json_path = Path(json_path)
    if not json_path.is_file():
        raise DataError("COCO annotation file not found", path=json_path,
                        fix="extract annotations_trainval2014.zip into <coco>/annotations/")
    try:
        with contextlib.redirect_stdout(_io.StringIO()):
            return COCO(str(json_path))
    except (ValueError, KeyError, TypeError, AssertionError) as e:
        raise DataError(f"cannot read COCO annotations ({type(e).__name__}: {e})", path=json_path,
                        fix="re-download the annotation file") from None


def category_table(coco):
    """(category ids in increasing order, their names): id ``cat_ids[k]`` becomes mask value k + 1."""
    cat_ids = sorted(coco.getCatIds())
    return cat_ids, [coco.loadCats(c)[0]["name"] for c in cat_ids]


def image_key(img_info):
    """The dataset id of a COCO image: its file name without extension."""
    return Path(img_info["file_name"]).stem


def image_classes(coco, img_id, cat_value):
    """Sorted 0-based class indices of every annotation (crowd included) of one image."""
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id], iscrowd=None))
    return sorted({cat_value[a["category_id"]] - 1 for a in anns})


def render_coco_mask(coco, img_info, cat_value):
    """uint8 (H, W) index mask of one image under the module's overlap rule."""
    h, w = int(img_info["height"]), int(img_info["width"])
    out = np.zeros((h, w), dtype=np.uint8)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_info["id"]], iscrowd=None))
    things, crowd = [], np.zeros((h, w), dtype=bool)
    for a in anns:
        with warnings.catch_warnings():  # pycocotools' decode trips numpy 2's copy-keyword deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            m = coco.annToMask(a).astype(bool)
        if m.shape != (h, w):
            raise DataError(f"annotation {a['id']} decodes to {m.shape}, image is {(h, w)}",
                            fix="check the instances json for this image")
        if a.get("iscrowd", 0):
            crowd |= m
        else:
            things.append((-int(m.sum()), int(a["id"]), cat_value[a["category_id"]], m))
    for _, _, value, m in sorted(things, key=lambda t: (t[0], t[1])):
        out[m] = value
    out[crowd & (out == 0)] = 255
    return out
