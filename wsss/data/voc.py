"""PASCAL VOC 2012 (+ SBD "train_aug") and every other VOC-layout root (the synthetic benchmark).

Layout::

    root/JPEGImages/<id>.jpg
    root/SegmentationClass/<id>.png       palette or gray index PNG, 255 = void
    root/SegmentationClassAug/<id>.png    SBD-augmented masks, used by splits named *aug*
    root/Annotations/<id>.xml             optional; image labels where an image has no mask
    root/ImageSets/Segmentation/<split>.txt
    root/class_names.txt                  optional for VOC (default: the 20 VOC classes)

Image labels come from the mask (its values other than 0 and 255) and, for images without a
mask (the test split), from the object names of ``Annotations/<id>.xml``. ``label_source="xml"``
reverses the preference (psa/IRN built their VOC label files from the XML annotations).

SBD helpers (:func:`load_sbd_mask`, :func:`derive_train_aug`) back ``tools/prepare_voc.py``.
"""

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .base import DATASETS, Dataset, label_from_mask, multi_hot, read_class_names, read_ids

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

#: |(SBD train ∪ SBD val ∪ VOC train) − VOC val| on the full VOC 2012 + SBD release.
TRAIN_AUG_SIZE = 10582


def is_voc_layout(root):
    root = Path(root)
    return (root / "JPEGImages").is_dir() and (root / "ImageSets" / "Segmentation").is_dir()


def split_list_path(root, split):
    return Path(root) / "ImageSets" / "Segmentation" / f"{split}.txt"


def xml_object_names(path):
    """Object class names listed in a VOC ``Annotations/<id>.xml`` file (in file order)."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as e:
        raise DataError(f"cannot parse XML annotation ({e})", path=path,
                        fix="re-download or remove this file") from None
    return [(obj.findtext("name") or "").strip() for obj in tree.getroot().iter("object")]


class VOCLayoutDataset(Dataset):
    """Reader for a VOC-layout root; subclasses choose the class names and label source."""

    require_class_names = False
    default_class_names = VOC_CLASSES

    def __init__(self, root, split, transform=None, mask_dir=None, label_source="mask"):
        root = Path(root)
        if not root.is_dir():
            raise DataError("dataset root not found", path=root, fix="pass the folder that holds JPEGImages/")
        if not is_voc_layout(root):
            raise DataError("not a VOC-layout root (JPEGImages/ and ImageSets/Segmentation/ expected)",
                            path=root, fix="point to e.g. VOCdevkit/VOC2012, or prepare the data first")
        if label_source not in ("mask", "xml"):
            raise ConfigError(f"label_source must be 'mask' or 'xml', got {label_source!r}")
        self.label_source = label_source
        self.seg_dir = root / ("SegmentationClassAug" if "aug" in split.lower() else "SegmentationClass")
        if "aug" in split.lower() and not self.seg_dir.is_dir():
            raise DataError(f"split {split!r} needs the SBD-augmented masks", path=self.seg_dir,
                            fix="run tools/prepare_voc.py --voc <VOC2012> --sbd <benchmark_RELEASE>")
        split_path = split_list_path(root, split)
        avail = sorted(p.stem for p in split_path.parent.glob("*.txt"))
        ids = read_ids(split_path, fix=f"use one of the splits {avail}" if avail else None)
        self._labels = {}
        super().__init__(root, split, self._class_names(root), ids, transform, mask_dir, split_path)

    def _class_names(self, root):
        path = root / "class_names.txt"
        if path.is_file():
            return read_class_names(path)
        if self.require_class_names:
            raise DataError("class name list not found", path=path,
                            fix="write one foreground class name per line (the generator/prepare tool writes it)")
        return list(self.default_class_names)

    def image_path(self, image_id):
        return self.root / "JPEGImages" / f"{image_id}.jpg"

    def gt_mask_path(self, image_id):
        p = self.seg_dir / f"{image_id}.png"
        return p if p.is_file() else None

    def xml_path(self, image_id):
        return self.root / "Annotations" / f"{image_id}.xml"

    def _label_from_xml(self, image_id):
        path = self.xml_path(image_id)
        index = {n: i for i, n in enumerate(self.class_names)}
        names = xml_object_names(path)
        unknown = sorted(set(names) - set(index))
        if unknown:
            raise DataError(f"unknown class name(s) {unknown}", path=path,
                            fix=f"use names from the class list: {', '.join(self.class_names)}")
        return multi_hot([index[n] for n in names], self.num_classes)

    def load_label(self, image_id, gt_mask=None):
        if image_id in self._labels:
            return self._labels[image_id].copy()
        has_xml = self.xml_path(image_id).is_file()
        mask_path = self.gt_mask_path(image_id)
        if has_xml and (self.label_source == "xml" or mask_path is None):
            label = self._label_from_xml(image_id)
        elif mask_path is not None:
            mask = gt_mask if gt_mask is not None else self.load_gt_mask(image_id)
            label = label_from_mask(mask, self.num_classes, mask_path)
        else:
            raise DataError(f"image {image_id!r} has neither a mask nor an XML annotation",
                            path=self.seg_dir / f"{image_id}.png",
                            fix=f"add the mask or {self.xml_path(image_id)}, or drop the id from the split list")
        self._labels[image_id] = label
        return label.copy()


@DATASETS.register("voc")
class VOCDataset(VOCLayoutDataset):
    """PASCAL VOC 2012; splits ``train`` (1464), ``val`` (1449), ``test`` (1456), ``train_aug`` (10582)."""


@DATASETS.register("synthetic")
class SyntheticDataset(VOCLayoutDataset):
    """The built-in synthetic benchmark (``wsss.data.synthetic``): VOC layout with ``class_names.txt``."""

    require_class_names = True


# --- SBD ("train_aug") helpers -----------------------------------------------------------------

def find_sbd_dataset(sbd_root):
    """The SBD folder holding ``cls/``, ``train.txt`` and ``val.txt`` (``benchmark_RELEASE/dataset``)."""
    sbd_root = Path(sbd_root)
    for cand in (sbd_root / "dataset", sbd_root):
        if (cand / "cls").is_dir():
            return cand
    raise DataError("SBD cls/ folder not found", path=sbd_root,
                    fix="pass the extracted benchmark_RELEASE folder (it holds dataset/cls/*.mat)")


def load_sbd_mask(path):
    """SBD ``cls/<id>.mat`` (struct ``GTcls``, field ``Segmentation``) -> uint8 (H, W) class indices."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DataError("SBD annotation not found", path=path, fix="check the SBD folder and its train/val lists")
    try:
        seg = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)["GTcls"].Segmentation
        seg = np.asarray(seg)
    except Exception as e:  # scipy raises assorted types (ValueError, TypeError, KeyError) on bad files
        raise DataError(f"cannot read SBD annotation ({type(e).__name__}: {e})", path=path,
                        fix="re-extract benchmark_RELEASE (GTcls.Segmentation expected)") from None
    if seg.ndim != 2 or seg.size == 0 or seg.min() < 0 or seg.max() > 255:
        raise DataError(f"GTcls.Segmentation has shape {seg.shape} / range outside 0..255", path=path,
                        fix="re-extract benchmark_RELEASE")
    return seg.astype(np.uint8)


def derive_train_aug(sbd_train, sbd_val, voc_train, voc_val):
    """The "train_aug" ids: (SBD train ∪ SBD val ∪ VOC train) − VOC val, sorted.

    On the full data this gives the customary 10582 ids (:data:`TRAIN_AUG_SIZE`); the tool
    checks the count because the published list itself cannot be downloaded here.
    """
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))
