"""Turn COCO 2014 instance annotations into a VOC-layout root (index-PNG masks, labels, splits).

    python tools/prepare_coco.py --coco data/coco2014 --out data/coco [--images symlink|copy|none]

Reads ``<coco>/annotations/instances_{train,val}2014.json`` with pycocotools and
``<coco>/{train,val}2014/<file>``. Writes, under ``--out``: ``SegmentationClass/<id>.png``,
``JPEGImages/<id>.jpg`` (symlinks by default), ``ImageSets/Segmentation/{train,val}.txt``,
``class_names.txt`` and ``cls_labels.json``. The mask rule (category ids -> 1..80 in id order;
larger instances painted first so smaller ones stay visible; crowd -> 255 where no instance)
is documented in :mod:`wsss.data.coco`. Existing masks are kept unless ``--overwrite``.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.cli import Timer, run_main  # noqa: E402
from wsss.config import save_config  # noqa: E402
from wsss.data.coco import (LABELS_FILE, category_table, image_classes, image_key, load_coco,  # noqa: E402
                            render_coco_mask)
from wsss.data.io import atomic_path, save_index_png, write_text  # noqa: E402
from wsss.errors import DataError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coco", required=True, help="folder with annotations/, train2014/, val2014/")
    p.add_argument("--out", required=True, help="output VOC-layout root")
    p.add_argument("--splits", nargs="+", default=["train", "val"], help="COCO 2014 splits to convert")
    p.add_argument("--images", choices=["symlink", "copy", "none"], default="symlink",
                   help="how JPEGImages/ gets the images (none: masks and labels only)")
    p.add_argument("--overwrite", action="store_true", help="rewrite existing masks and images")
    return p.parse_args(argv)


def place_image(src, dst, mode, overwrite):
    """Put ``src`` at ``dst`` as a symlink or a copy (atomically); missing source -> DataError."""
    if mode == "none" or (dst.is_symlink() or dst.exists()) and not overwrite:
        return
    if not src.is_file():
        raise DataError("COCO image not found", path=src,
                        fix="extract {train,val}2014.zip into --coco, or pass --images none")
    with atomic_path(dst) as tmp:
        if mode == "copy":
            shutil.copyfile(src, tmp)
        else:
            tmp.unlink()
            tmp.symlink_to(src.resolve())


def read_labels(path):
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise DataError("existing label file is not valid JSON", path=path, fix="delete it and rerun") from None


def convert_split(coco_root, out, split, args, names_seen, labels, counts):
    """Masks, images and labels of one split; returns its sorted ids."""
    coco = load_coco(coco_root / "annotations" / f"instances_{split}2014.json")
    cat_ids, names = category_table(coco)
    if names_seen and names_seen != names:
        raise DataError(f"the {split} annotations have other categories than the previous split",
                        path=coco_root / "annotations" / f"instances_{split}2014.json",
                        fix="use the train and val files of the same COCO release")
    names_seen[:] = names
    cat_value = {c: k + 1 for k, c in enumerate(cat_ids)}
    ids = []
    for info in tqdm(sorted(coco.loadImgs(coco.getImgIds()), key=lambda i: i["id"]), desc=split, unit="img"):
        key = image_key(info)
        ids.append(key)
        labels[key] = image_classes(coco, info["id"], cat_value)
        place_image(coco_root / f"{split}2014" / info["file_name"], out / "JPEGImages" / f"{key}.jpg",
                    args.images, args.overwrite)
        dst = out / "SegmentationClass" / f"{key}.png"
        if dst.is_file() and not args.overwrite:
            counts["kept"] += 1
            continue
        save_index_png(dst, render_coco_mask(coco, info, cat_value))
        counts["written"] += 1
    return sorted(ids)


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    coco_root, out = Path(args.coco), Path(args.out)
    if not coco_root.is_dir():
        raise DataError("COCO root not found", path=coco_root, fix="pass the folder holding annotations/")
    names, counts, sizes = [], {"written": 0, "kept": 0}, {}
    labels = read_labels(out / LABELS_FILE)  # other splits converted earlier keep their labels
    for split in args.splits:
        ids = convert_split(coco_root, out, split, args, names, labels, counts)
        write_text(out / "ImageSets" / "Segmentation" / f"{split}.txt", "\n".join(ids) + "\n")
        sizes[split] = len(ids)
    write_text(out / "class_names.txt", "\n".join(names) + "\n")
    write_text(out / LABELS_FILE, json.dumps(dict(sorted(labels.items())), separators=(",", ":")) + "\n")
    save_config(vars(args) | {"sizes": sizes, "num_classes": len(names)}, out / "prepare_coco.yaml")
    print(f"prepare_coco: {sizes} images, {len(names)} classes; masks {counts['written']} written, "
          f"{counts['kept']} kept -> {out} ({timer.seconds:.1f}s)")
    return 0


if __name__ == "__main__":
    run_main(main)
