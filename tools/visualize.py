"""Side-by-side colour panels of any stage's outputs, one PNG per image id.

    python tools/visualize.py --data data/synthetic --split val --limit 8 \
        --cams experiments/cam/cams --masks pseudo=experiments/rw/masks \
        --masks pred=experiments/seg/pred --masks crf=experiments/seg/pred_crf \
        --out experiments/report/panels

Each row shows the image, the ground-truth mask (when the split has one), the CAM heatmap
(max over the image's classes, jet colours, over the image) for every ``--cams`` directory, and
every ``--masks NAME=DIR`` index PNG (VOC palette over the image; void in white).
``index.md`` lists the panels for a report.
"""

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from wsss.cli import Timer, run_main
from wsss.config import save_config
from wsss.data import build_dataset, detect_dataset
from wsss.data.io import atomic_path, find_cam, load_cam, load_mask, voc_palette, write_text
from wsss.errors import ConfigError, DataError

TITLE_H = 18
PALETTE = np.array(voc_palette(), dtype=np.uint8).reshape(256, 3)
PALETTE_VOID = np.array([255, 255, 255], dtype=np.uint8)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--dataset", default=None, help="dataset name (default: detected from the root)")
    p.add_argument("--split", default="val")
    p.add_argument("--ids", default=None, help="comma-separated ids (default: the first --limit of the split)")
    p.add_argument("--limit", type=int, default=8)
    p.add_argument("--cams", action="append", default=[], metavar="[NAME=]DIR", help="CAM directory (repeatable)")
    p.add_argument("--masks", action="append", default=[], metavar="NAME=DIR", help="index-PNG directory (repeatable)")
    p.add_argument("--no-gt", action="store_true", help="leave out the ground-truth panel")
    p.add_argument("--alpha", type=float, default=0.55, help="overlay opacity")
    p.add_argument("--height", type=int, default=160, help="tile height in pixels")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    return p.parse_args(argv)


def named_dirs(items, default):
    """``["a=DIR", "DIR"]`` -> ``[("a", DIR), (default, DIR)]``; directories must exist."""
    out = []
    for i, item in enumerate(items):
        if "=" in item:
            name, path = item.split("=", 1)
        else:
            name, path = (default if len(items) == 1 else f"{default}{i + 1}"), item
        path = Path(path)
        if not path.is_dir():
            raise DataError("directory not found", path=path, fix="run that stage first or fix the path")
        out.append((name, path))
    return out


def overlay_mask(image, mask, alpha):
    """VOC-palette colours of ``mask`` blended over ``image``; void (255) in white, background clear."""
    colour = PALETTE[mask]
    colour[mask == 255] = PALETTE_VOID
    a = np.where(mask[..., None] == 0, 0.0, alpha)
    return (image * (1 - a) + colour * a).astype(np.uint8)


def overlay_cam(image, cam, alpha):
    """Jet heatmap of ``cam`` (H, W) in [0, 1] blended over ``image``."""
    heat = cv2.applyColorMap((np.clip(cam, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    return (image * (1 - alpha) + heat * alpha).astype(np.uint8)


def cam_map(path, shape):
    """Max over classes of a CAM file's ``hr_cam`` (zeros when the image has no class)."""
    cam = load_cam(path)["hr_cam"]
    if cam.shape[0] == 0:
        return np.zeros(shape, dtype=np.float32)
    if cam.shape[1:] != tuple(shape):
        raise DataError(f"hr_cam is {cam.shape[2]}x{cam.shape[1]} but the image is {shape[1]}x{shape[0]}",
                        path=path, fix="re-run the CAM inference on this dataset")
    return cam.max(axis=0)


def tile(rgb, title, height):
    """Resize to ``height`` (nearest, to keep masks crisp) and put a title band on top."""
    h, w = rgb.shape[:2]
    width = max(1, round(w * height / h))
    body = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_NEAREST)
    band = np.full((TITLE_H, width, 3), 255, dtype=np.uint8)
    cv2.putText(band, title[: max(1, width // 7)], (2, TITLE_H - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.concatenate([band, body], axis=0)


def panel(sample, dataset, cams, masks, args):
    """The row of tiles for one sample."""
    image, image_id = sample["image"], sample["id"]
    tiles = [tile(image, image_id, args.height)]
    if not args.no_gt:
        gt = dataset.load_gt_mask(image_id)
        if gt is not None:
            tiles.append(tile(overlay_mask(image, gt, args.alpha), "ground truth", args.height))
    for name, d in cams:
        tiles.append(tile(overlay_cam(image, cam_map(find_cam(d, image_id), image.shape[:2]), args.alpha),
                          name, args.height))
    for name, d in masks:
        m = load_mask(d / f"{image_id}.png")
        if m.shape != image.shape[:2]:
            raise DataError(f"mask is {m.shape[1]}x{m.shape[0]}, image {image.shape[1]}x{image.shape[0]}",
                            path=d / f"{image_id}.png", fix="regenerate it for this dataset")
        tiles.append(tile(overlay_mask(image, m, args.alpha), name, args.height))
    gap = np.full((tiles[0].shape[0], 4, 3), 255, dtype=np.uint8)
    row = [t for pair in zip(tiles, [gap] * len(tiles)) for t in pair][:-1]
    return np.concatenate(row, axis=1)


def select_ids(dataset, ids, limit):
    if ids:
        wanted = [i.strip() for i in ids.split(",") if i.strip()]
        unknown = [i for i in wanted if i not in set(dataset.ids)]
        if unknown:
            raise ConfigError(f"ids not in split {dataset.split!r}: {', '.join(unknown[:5])}",
                              fix="pick ids from the split list, or change --split")
        return wanted
    return dataset.ids[: max(0, limit)]


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    name = args.dataset or detect_dataset(args.data)
    dataset = build_dataset(name, args.data, args.split)
    if any("=" not in m for m in args.masks):
        raise ConfigError("--masks needs NAME=DIR", fix="e.g. --masks pseudo=experiments/rw/masks")
    cams = named_dirs(args.cams, "CAM")
    masks = named_dirs(args.masks, "mask")
    out = Path(args.out)
    ids = select_ids(dataset, args.ids, args.limit)
    index = {i: k for k, i in enumerate(dataset.ids)}
    written = skipped = 0
    for image_id in tqdm(ids, desc="visualize", unit="img"):
        path = out / f"{image_id}.png"
        if path.is_file() and not args.overwrite:
            skipped += 1
            continue
        row = panel(dataset[index[image_id]], dataset, cams, masks, args)
        with atomic_path(path) as tmp:
            Image.fromarray(row).save(tmp, format="PNG")
        written += 1
    write_text(out / "index.md", "".join(f"![{i}]({i}.png)\n\n" for i in ids))
    save_config({**vars(args), "dataset": name, "ids": ids}, out / "visualize.yaml")
    print(f"visualize: {written} panels written, {skipped} skipped (existing) in {out} "
          f"[{len(cams)} CAM, {len(masks)} mask sources] in {timer.seconds:.1f}s")
    return 0


if __name__ == "__main__":
    run_main(main)
