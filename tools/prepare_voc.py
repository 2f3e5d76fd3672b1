"""Add the SBD-augmented "train_aug" split to PASCAL VOC 2012.

    python tools/prepare_voc.py --voc VOCdevkit/VOC2012 --sbd benchmark_RELEASE [--out DIR]

Writes ``SegmentationClassAug/<id>.png`` (uint8 index PNGs, VOC palette) for every image of
SBD train/val and VOC train/val -- VOC's own ``SegmentationClass`` masks take precedence where
they exist, SBD's ``cls/<id>.mat`` (``GTcls.Segmentation``) fill in the rest -- and
``ImageSets/Segmentation/train_aug.txt`` = (SBD train ∪ SBD val ∪ VOC train) − VOC val, sorted.

The published 10582-id list cannot be downloaded here, so it is derived by that set arithmetic
and its size checked: on the full data (VOC train 1464 / val 1449, SBD train 8498 / val 2857)
a count other than 10582 is reported as a warning.

``--out`` (default: the VOC folder itself) receives the new files; a separate ``--out`` gets
symlinks to VOC's JPEGImages/, SegmentationClass/ and Annotations/ and copies of its split lists,
so it is a complete VOC-layout root. Existing masks are kept unless ``--overwrite`` (resume).
"""

import argparse
import shutil
import sys
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsss.cli import Timer, run_main  # noqa: E402
from wsss.config import save_config  # noqa: E402
from wsss.data.base import read_ids  # noqa: E402
from wsss.data.io import atomic_path, load_mask, save_index_png, write_text  # noqa: E402
from wsss.data.voc import TRAIN_AUG_SIZE, derive_train_aug, find_sbd_dataset, load_sbd_mask  # noqa: E402
from wsss.errors import DataError  # noqa: E402

FULL_SIZES = {"voc_train": 1464, "voc_val": 1449, "sbd_train": 8498, "sbd_val": 2857}
LINKED = ("JPEGImages", "SegmentationClass", "Annotations")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--voc", required=True, help="VOCdevkit/VOC2012")
    p.add_argument("--sbd", required=True, help="benchmark_RELEASE (or its dataset/ folder)")
    p.add_argument("--out", default=None, help="output root (default: --voc)")
    p.add_argument("--overwrite", action="store_true", help="rewrite existing masks")
    return p.parse_args(argv)


def link_voc(voc, out):
    """Make ``out`` a VOC-layout root sharing ``voc``'s images, masks and annotations."""
    out.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        src, dst = voc / name, out / name
        if src.is_dir() and not dst.exists():
            dst.symlink_to(src.resolve(), target_is_directory=True)
    for lst in sorted((voc / "ImageSets" / "Segmentation").glob("*.txt")):
        dst = out / "ImageSets" / "Segmentation" / lst.name
        if lst.name != "train_aug.txt" and not dst.exists():
            with atomic_path(dst) as tmp:
                shutil.copyfile(lst, tmp)


def write_mask(image_id, voc_mask, sbd_mat, dst):
    """VOC's mask if present (decoded and re-saved as an index PNG), else SBD's."""
    if voc_mask.is_file():
        save_index_png(dst, load_mask(voc_mask))
        return "voc"
    save_index_png(dst, load_sbd_mask(sbd_mat))
    return "sbd"


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    voc, out = Path(args.voc), Path(args.out or args.voc)
    if not (voc / "JPEGImages").is_dir():
        raise DataError("VOC JPEGImages/ not found", path=voc / "JPEGImages",
                        fix="pass --voc VOCdevkit/VOC2012 (the folder holding JPEGImages/)")
    sbd = find_sbd_dataset(args.sbd)
    seg = voc / "ImageSets" / "Segmentation"
    lists = {"voc_train": read_ids(seg / "train.txt"), "voc_val": read_ids(seg / "val.txt"),
             "sbd_train": read_ids(sbd / "train.txt"), "sbd_val": read_ids(sbd / "val.txt")}
    train_aug = derive_train_aug(lists["sbd_train"], lists["sbd_val"], lists["voc_train"], lists["voc_val"])
    missing = [i for i in train_aug if not (voc / "JPEGImages" / f"{i}.jpg").is_file()]
    if missing:
        raise DataError(f"{len(missing)} train_aug image(s) missing from JPEGImages, e.g. {missing[0]!r}",
                        path=voc / "JPEGImages" / f"{missing[0]}.jpg",
                        fix="use the full VOC2012 trainval release (it holds every SBD image)")

    if out.resolve() != voc.resolve():
        link_voc(voc, out)
    mask_ids = sorted(set().union(*lists.values()))
    aug_dir = out / "SegmentationClassAug"
    counts = {"voc": 0, "sbd": 0, "skipped": 0}
    for image_id in tqdm(mask_ids, desc="SegmentationClassAug", unit="img"):
        dst = aug_dir / f"{image_id}.png"
        if dst.is_file() and not args.overwrite:
            counts["skipped"] += 1
            continue
        counts[write_mask(image_id, voc / "SegmentationClass" / f"{image_id}.png",
                          sbd / "cls" / f"{image_id}.mat", dst)] += 1

    write_text(out / "ImageSets" / "Segmentation" / "train_aug.txt", "\n".join(train_aug) + "\n")
    sizes = {k: len(v) for k, v in lists.items()}
    if sizes == FULL_SIZES and len(train_aug) != TRAIN_AUG_SIZE:
        print(f"warning: train_aug has {len(train_aug)} ids, expected {TRAIN_AUG_SIZE} on the full "
              f"VOC 2012 + SBD data; check the split lists", file=sys.stderr)
    elif sizes != FULL_SIZES:
        print(f"note: not the full VOC 2012 + SBD lists ({sizes}); the {TRAIN_AUG_SIZE}-id check is skipped",
              file=sys.stderr)
    save_config(vars(args) | {"sizes": sizes, "train_aug": len(train_aug)}, out / "prepare_voc.yaml")
    print(f"prepare_voc: train_aug {len(train_aug)} ids; masks {counts['voc']} from VOC, {counts['sbd']} "
          f"from SBD, {counts['skipped']} kept -> {aug_dir} ({timer.seconds:.1f}s)")
    return 0


if __name__ == "__main__":
    run_main(main)
