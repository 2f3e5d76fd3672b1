"""SP-CAM's association network against SLIC and the regular grid at the same cell size, on the
synthetic benchmark: boundary recall / precision and achievable segmentation accuracy.

    nice -n 5 python benchmarks/superpixel_synthetic.py --data /work/data/synthetic \
        --exp /work/bench/priors/spcam_prep/superpixel --out benchmarks/results/superpixel_synthetic.json

Superpixels per image (``--split``, sides multiples of 16):

- ``learnt``: the trained association network of ``--exp`` (``tools/train_superpixel.py``),
  each pixel in its most associated cell (``wsss.superpixel.ops.hard_superpixels``);
- ``untrained``: the same network at its random initialisation (the seed of ``--exp``'s config);
- ``slic``: ``skimage.segmentation.slic`` with as many segments as cells ((H/16)(W/16)) at
  each ``--slic-compactness``;
- ``grid``: the 16 x 16 cells themselves.

Metrics (``wsss.metrics.superpixel``, summed over the split): boundary recall and precision
against the ground-truth label boundaries within ``--tolerance`` pixels, ASA, and the mean number
of superpixels per image. A PNG panel (``--panel``) draws the boundaries of each kind on a few
images. The JSON result (written atomically) records the command line.
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsss.cams.inference import normalize  # noqa: E402
from wsss.cli import run_main  # noqa: E402
from wsss.config import load_config  # noqa: E402
from wsss.data import build_dataset, detect_dataset  # noqa: E402
from wsss.data.io import atomic_path, load_image, write_json  # noqa: E402
from wsss.engine import load_network  # noqa: E402
from wsss.errors import DataError  # noqa: E402
from wsss.metrics.superpixel import asa_counts, boundary_counts, label_boundaries  # noqa: E402
from wsss.superpixel.net import SpixelNet  # noqa: E402
from wsss.superpixel.ops import hard_superpixels  # noqa: E402

DEFINITIONS = {
    "boundary_recall": "(%) ground-truth label-boundary pixels (label differs from the east or south neighbour) "
                       "with a superpixel boundary pixel within the tolerance (Chebyshev), summed over the split",
    "boundary_precision": "(%) superpixel boundary pixels with a ground-truth boundary pixel within the tolerance",
    "asa": "(%) achievable segmentation accuracy: each superpixel labelled with its majority ground-truth class",
    "superpixels": "mean number of superpixel ids per image",
    "segments": "mean number of 4-connected segments per image (fragments of a superpixel count separately; "
                "boundary recall rises with fragmentation, so read it with this number and the precision)",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic")
    p.add_argument("--exp", required=True, help="trained association-network experiment")
    p.add_argument("--split", default="val")
    p.add_argument("--out", default="benchmarks/results/superpixel_synthetic.json")
    p.add_argument("--panel", default="benchmarks/results/superpixel_synthetic.png", help="PNG panel ('' = none)")
    p.add_argument("--tolerance", type=int, default=2, help="boundary match tolerance in pixels")
    p.add_argument("--slic-compactness", default="1,10,30", help="comma-separated SLIC compactness values")
    p.add_argument("--panel-images", type=int, default=4)
    return p.parse_args(argv)


def networks(exp):
    """The trained association network of ``exp`` and one at the same random initialisation."""
    cfg = load_config(Path(exp) / "config.yaml")
    torch.manual_seed(int((cfg.get("train") or {}).get("seed", 0)))
    untrained = SpixelNet().eval()
    learnt = load_network(SpixelNet(), exp, prefix="net.", finished=True, what="superpixel network").eval()
    return {"learnt": learnt, "untrained": untrained}


def slic_labels(image, n_segments, compactness):
    from skimage.segmentation import slic

    return slic(image, n_segments=n_segments, compactness=compactness, start_label=0)


def segmentations(image, nets, compactness, cell=16):
    h, w = image.shape[:2]
    if h % cell or w % cell:
        raise DataError(f"image is {w}x{h}: this benchmark needs sides that are multiples of {cell}")
    out = {}
    with torch.no_grad():
        x = normalize(image)[None]
        for name, net in nets.items():
            out[name] = hard_superpixels(net(x), cell)[0].numpy()
    for c in compactness:
        out[f"slic_c{c:g}"] = slic_labels(image, (h // cell) * (w // cell), c)
    out["grid"] = (np.arange(h)[:, None] // cell) * (w // cell) + np.arange(w)[None, :] // cell
    return out


def segment_count(superpixels):
    """Number of 4-connected regions of equal id."""
    from skimage.measure import label

    return int(label(np.asarray(superpixels) + 1, background=0, connectivity=1).max())


def draw_panel(rows, path):
    """Image rows of [image + GT boundaries, one boundary overlay per kind] as one PNG."""
    from PIL import Image, ImageDraw

    names = list(rows[0][1])
    scale, pad, top = 2, 4, 14
    tiles = []
    for image, segs, gt in rows:
        row = [overlay(image, label_boundaries(gt), (255, 255, 0))]
        row += [overlay(image, label_boundaries(segs[n]), (255, 0, 0)) for n in names]
        tiles.append(row)
    th, tw = tiles[0][0].shape[0] * scale, tiles[0][0].shape[1] * scale
    canvas = Image.new("RGB", ((tw + pad) * len(tiles[0]), top + (th + pad) * len(tiles)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, label in enumerate(["image + GT", *names]):
        draw.text((j * (tw + pad) + 2, 1), label, fill="black")
    for i, row in enumerate(tiles):
        for j, t in enumerate(row):
            canvas.paste(Image.fromarray(t).resize((tw, th), Image.NEAREST), (j * (tw + pad), top + i * (th + pad)))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")


def overlay(image, boundary, colour):
    out = image.copy()
    out[boundary] = colour
    return out


def main(argv=None):
    args = parse_args(argv)
    command = shlex.join([Path(sys.executable).name, *sys.argv]) if argv is None else shlex.join(argv)
    start = time.perf_counter()
    dataset = build_dataset(detect_dataset(args.data), args.data, args.split)
    nets = networks(args.exp)
    compactness = [float(c) for c in args.slic_compactness.split(",")]
    totals, panel = {}, []
    for i in tqdm(range(len(dataset)), desc=f"superpixels {args.split}", mininterval=1.0):
        image_id = dataset.ids[i]
        image, gt = load_image(dataset.image_path(image_id)), dataset.load_gt_mask(image_id)
        segs = segmentations(image, nets, compactness)
        for name, sp in segs.items():
            t = totals.setdefault(name, np.zeros(8, np.int64))
            t[:4] += boundary_counts(sp, gt, args.tolerance)
            t[4:6] += asa_counts(sp, gt)
            t[6] += len(np.unique(sp))
            t[7] += segment_count(sp)
        if len(panel) < args.panel_images:
            panel.append((image, segs, gt))
    pct = lambda a, b: round(100.0 * a / max(1, b), 2)  # noqa: E731
    results = {name: {"boundary_recall": pct(t[0], t[1]), "boundary_precision": pct(t[2], t[3]),
                      "asa": pct(t[4], t[5]), "superpixels": round(t[6] / len(dataset), 1),
                      "segments": round(t[7] / len(dataset), 1)}
               for name, t in totals.items()}
    if args.panel:
        draw_panel(panel, args.panel)
    write_json(args.out, {"benchmark": "superpixel_synthetic", "command": command, "definitions": DEFINITIONS,
                          "setup": {"data": str(args.data), "split": args.split, "images": len(dataset),
                                    "tolerance": args.tolerance, "cell": 16, "exp": str(args.exp),
                                    "exp_config": load_config(Path(args.exp) / "config.yaml")},
                          "results": results, "seconds": round(time.perf_counter() - start, 1)})
    for name, r in results.items():
        print(f"[superpixel_synthetic] {name:14s} BR {r['boundary_recall']:6.2f}  BP {r['boundary_precision']:6.2f}  "
              f"ASA {r['asa']:6.2f}  ({r['superpixels']:.1f} superpixels, {r['segments']:.1f} segments)")
    print(f"[superpixel_synthetic] {len(dataset)} images of {args.split} -> {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
