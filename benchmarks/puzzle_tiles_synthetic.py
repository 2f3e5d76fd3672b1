"""Where Puzzle-CAM's CAMs go on the synthetic benchmark, and why: full-image CAMs against the CAMs
stitched from the 2x2 tiles (what the reconstruction term pulls the full CAMs toward), per region.

    python benchmarks/puzzle_tiles_synthetic.py --data data/synthetic \
        --exps cam=/tmp/priors/cam puzzle=/tmp/priors/puzzle --out benchmarks/results/puzzle_tiles_synthetic.json

``--exps`` names trained CAM experiments (e.g. the ``cam`` and ``puzzle`` folders that
``benchmarks/priors_synthetic.py --work W`` leaves in ``W``). For each, on the val split at 128 px
(one scale, no flip):

- ``regions``: mean of ReLU(CAM_c) / its max over the image, for every present class c, on c's
  class-specific part, on c's body (object minus part), and on the background, split by whether
  the image's background is c's preferred one (``bg_preferred``) or not (``bg_other``); for the
  full image's CAMs (``full``) and the stitched tile CAMs (``stitched``);
- ``re_l1``: Puzzle-CAM's reconstruction term, mean |A - A_m| * y on the raw CAMs;
- ``exact_labels``: share (%) of images whose GAP logits (> 0) give exactly the image's labels,
  from the full image and from the stitched tiles;
- ``tiles``: share (%) of (tile, present class) pairs whose 64-px tile holds pixels of an object
  of that class, and pixels of its part (the only cue that tells the two classes of a group apart).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.stage_run import run_record  # noqa: E402
from wsss.cams import METHODS  # noqa: E402
from wsss.cams.puzzle import stitch, tile  # noqa: E402
from wsss.cli import run_main  # noqa: E402
from wsss.config import load_config  # noqa: E402
from wsss.data import build_dataset  # noqa: E402
from wsss.data.io import write_json, write_text  # noqa: E402
from wsss.data.synthetic import CLASSES, render_sample, scene_options  # noqa: E402
from wsss.data.transforms import build_eval_transform  # noqa: E402
from wsss.errors import ConfigError  # noqa: E402

REGIONS = ("part", "body", "bg_preferred", "bg_other")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic", help="synthetic dataset root")
    p.add_argument("--exps", nargs="+", required=True, help="name=experiment folder of a trained CAM network")
    p.add_argument("--split", default="val")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/puzzle_tiles_synthetic.json"))
    return p.parse_args(argv)


def region_means(cam, scene, cls):
    """Mean of ``cam`` (H, W, >= 0, max-normalised) on ``cls``'s part / body and on the background."""
    own = scene.mask == cls + 1
    bg_key = "bg_preferred" if scene.background == CLASSES[cls].background else "bg_other"
    masks = {"part": own & scene.parts, "body": own & ~scene.parts, bg_key: scene.mask == 0}
    return {k: float(cam[m].mean()) for k, m in masks.items() if m.any()}


@torch.no_grad()
def measure(exp, data, split, meta):
    cfg = load_config(Path(exp) / "config.yaml")
    ds = build_dataset("synthetic", data, split, transform=build_eval_transform(cfg.get("augment")))
    net = METHODS.get(cfg["method"]["name"]).from_checkpoint(cfg, ds.num_classes, Path(exp) / "checkpoints/last.pth").net
    net.eval()
    acc = {v: {k: [] for k in REGIONS} for v in ("full", "stitched")}
    exact = {"full": [], "stitched": []}
    re, tile_obj, tile_part = [], [], []
    for i0 in tqdm(range(0, len(ds), 32), desc=f"{Path(exp).name} on {split}", mininterval=1.0):
        items = [ds[j] for j in range(i0, min(len(ds), i0 + 32))]
        x = torch.stack([s["image"] for s in items])
        y = torch.stack([torch.as_tensor(s["label"]) for s in items]).float()
        _, full = net(x)
        stitched = stitch(net(tile(x))[1])
        re.append(float((torch.abs(full - stitched) * y[:, :, None, None]).mean()))
        for b, s in enumerate(items):
            scene = render_sample(meta["seed"], int(s["id"].rsplit("_", 1)[1]), meta["size"], split,
                                  **scene_options(meta))
            for v, cams in (("full", full), ("stitched", stitched)):
                exact[v].append(bool(((cams[b].mean((1, 2)) > 0).float() == y[b]).all()))
                up = F.interpolate(cams[b:b + 1], size=scene.mask.shape, mode="bilinear", align_corners=False)[0].relu()
                for c in torch.nonzero(y[b]).flatten().tolist():
                    a = up[c].numpy()
                    for k, m in region_means(a / (a.max() + 1e-5), scene, c).items():
                        acc[v][k].append(m)
            h = scene.mask.shape[0] // 2
            for c in torch.nonzero(y[b]).flatten().tolist():
                own = scene.mask == c + 1
                for ty in range(2):
                    for tx in range(2):
                        win = (slice(ty * h, (ty + 1) * h), slice(tx * h, (tx + 1) * h))
                        tile_obj.append(bool(own[win].any()))
                        tile_part.append(bool((own & scene.parts)[win].any()))
    return {"regions": {v: {k: round(float(np.mean(m)), 3) for k, m in r.items()} for v, r in acc.items()},
            "re_l1": round(float(np.mean(re)), 4),
            "exact_labels": {v: round(100 * float(np.mean(e)), 1) for v, e in exact.items()},
            "tiles": {"with_object": round(100 * float(np.mean(tile_obj)), 1),
                      "with_part": round(100 * float(np.mean(tile_part)), 1)},
            "method": cfg["method"]["name"], "exp": str(exp)}


def render(results):
    lines = ["| net | CAMs | part | body | bg (preferred) | bg (other) | exact labels % | re L1 |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        for v in ("full", "stitched"):
            g = r["regions"][v]
            lines.append(f"| {name} | {v} | " + " | ".join(f"{g[k]:.3f}" for k in REGIONS)
                         + f" | {r['exact_labels'][v]:.1f} | {r['re_l1'] if v == 'full' else ''} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    meta = json.loads((Path(args.data) / "meta.json").read_text())["config"]
    torch.set_num_threads(2)
    results = {}
    for item in args.exps:
        name, sep, exp = item.partition("=")
        if not sep or not (Path(exp) / "checkpoints/last.pth").is_file():
            raise ConfigError(f"--exps {item!r}: want name=folder of a trained CAM experiment", path=exp or None,
                              fix="e.g. --exps cam=/tmp/priors/cam puzzle=/tmp/priors/puzzle")
        results[name] = measure(exp, args.data, args.split, meta)
        print(f"[puzzle_tiles] {name}: {json.dumps(results[name]['regions'])}", flush=True)
    out = Path(args.out)
    write_json(out, {"benchmark": "puzzle_tiles_synthetic", "data": meta, "split": args.split,
                     "results": results, **run_record()})
    write_text(out.with_suffix(".md"), render(results))
    print(render(results) + f"-> {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
