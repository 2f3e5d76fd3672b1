"""A plain folder of labelled images (your own data).

Layout::

    root/images/<id>.<jpg|jpeg|png|bmp>
    root/labels.txt    one line per image: ``<id> <class> <class> ...`` (whitespace separated)
      or labels.csv    rows ``<id>,<class>,<class>,...`` (for names with spaces; an optional
                       header row whose first cell is ``id`` or ``image`` is skipped)
    root/class_names.txt   one foreground class per line (fixes the class order)
    root/masks/<id>.png    optional index masks (0 = background, class k = k + 1, 255 = ignore)
    root/<split>.txt       optional split lists; split ``all`` = every labelled image

Labels come from the labels file; a listed image with no class is background-only.
"""

import csv
from pathlib import Path

from ..errors import DataError
from .base import DATASETS, Dataset, multi_hot, read_class_names, read_ids

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
LABEL_FILES = ("labels.txt", "labels.csv")


def find_labels_file(root):
    for name in LABEL_FILES:
        if (Path(root) / name).is_file():
            return Path(root) / name
    return None


def is_folder_layout(root):
    return (Path(root) / "images").is_dir() and find_labels_file(root) is not None


def _label_rows(path):
    """(line number, id, [names]) of a labels.txt / labels.csv file."""
    text = path.read_text()
    if path.suffix == ".csv":
        rows = [[c.strip() for c in r] for r in csv.reader(text.splitlines())]
        if rows and rows[0] and rows[0][0].lower() in ("id", "image", "image_id"):
            rows[0] = []
    else:
        rows = [ln.split() if not ln.lstrip().startswith("#") else [] for ln in text.splitlines()]
    for n, row in enumerate(rows, 1):
        row = [c for c in row if c]
        if row:
            yield n, row[0], row[1:]


def read_labels(path, class_names):
    """{id: sorted 0-based class indices}; DataError naming the line of an unknown class or repeat."""
    index = {c: i for i, c in enumerate(class_names)}
    labels = {}
    for n, image_id, names in _label_rows(path):
        unknown = [c for c in names if c not in index]
        if unknown:
            raise DataError(f"line {n}: unknown class name(s) {unknown} for {image_id!r}", path=path,
                            fix=f"use names from class_names.txt ({', '.join(class_names)}) or add them there")
        if image_id in labels:
            raise DataError(f"line {n}: image {image_id!r} listed twice", path=path, fix="merge its lines")
        labels[image_id] = sorted({index[c] for c in names})
    if not labels:
        raise DataError("labels file lists no image", path=path, fix="write one line per image: <id> <class> ...")
    return labels


@DATASETS.register("folder")
class FolderDataset(Dataset):
    """``images/`` + ``labels.txt``/``labels.csv`` + ``class_names.txt`` (+ optional ``masks/``)."""

    def __init__(self, root, split="all", transform=None, mask_dir=None):
        root = Path(root)
        if not root.is_dir():
            raise DataError("dataset root not found", path=root, fix="pass the folder that holds images/")
        if not (root / "images").is_dir():
            raise DataError("images/ folder not found", path=root / "images",
                            fix="put the images in <root>/images/<id>.jpg")
        labels_path = find_labels_file(root)
        if labels_path is None:
            raise DataError("labels file not found", path=root / LABEL_FILES[0],
                            fix="write labels.txt (<id> <class> ...) or labels.csv (<id>,<class>,...)")
        names_path = root / "class_names.txt"
        if not names_path.is_file():
            found = sorted({c for _, _, row in _label_rows(labels_path) for c in row})
            raise DataError("class name list not found", path=names_path,
                            fix=f"write one foreground class per line, e.g. the names used: {', '.join(found)}")
        class_names = read_class_names(names_path)
        self.labels_path = labels_path
        self._labels = read_labels(labels_path, class_names)
        self._files = {}
        for p in sorted((root / "images").iterdir()):
            if p.suffix.lower() in IMAGE_EXTS:
                self._files.setdefault(p.stem, p)

        split_path = root / f"{split}.txt"
        if split_path.is_file():
            ids = read_ids(split_path)
        elif split == "all":
            ids, split_path = list(self._labels), labels_path
        else:
            have = sorted(p.stem for p in root.glob("*.txt") if p.name not in ("labels.txt", "class_names.txt"))
            raise DataError(f"split list for {split!r} not found", path=split_path,
                            fix=f"use split 'all' or one of {have}" if have else "use split 'all' or write the list")
        unlabelled = [i for i in ids if i not in self._labels]
        if unlabelled:
            raise DataError(f"{len(unlabelled)} id(s) of the split have no line in {labels_path.name}, "
                            f"e.g. {unlabelled[0]!r}", path=split_path, fix=f"add them to {labels_path}")
        super().__init__(root, split, class_names, ids, transform, mask_dir, split_path)

    def image_path(self, image_id):
        return self._files.get(image_id, self.root / "images" / f"{image_id}.jpg")

    def gt_mask_path(self, image_id):
        p = self.root / "masks" / f"{image_id}.png"
        return p if p.is_file() else None

    def load_label(self, image_id, gt_mask=None):
        return multi_hot(self._labels[image_id], self.num_classes)
