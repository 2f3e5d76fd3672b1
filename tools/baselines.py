"""Trivial baselines of a split, scored by the same code as tools/evaluate.py.

    python tools/baselines.py --data data/voc --split val --out experiments/baselines_val.json

- ``all_background``: every pixel predicted as background;
- ``first_label``: every pixel predicted as the image's first label (its lowest foreground
  class id, from the image-level label), background when the image has none.

A method that does not beat both on mIoU has learned nothing about where objects are.
Numbers are percentages (see tools/evaluate.py for the definitions).
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np

from wsss.cli import Timer, run_main
from wsss.config import save_config
from wsss.data import build_dataset, detect_dataset
from wsss.data.io import write_json
from wsss.metrics import DatasetGT, EvalJob, evaluate_label_maps, format_table, protocol_notes


def all_background(dataset):
    return lambda image_id, gt: (np.zeros_like(gt), None)


def first_label(dataset):
    def predict(image_id, gt):
        present = np.flatnonzero(dataset.load_label(image_id, gt))
        value = present[0] + 1 if present.size else 0
        return np.full_like(gt, value), None

    return predict


#: baseline name -> factory(dataset) -> predict(image_id, gt) -> (label map, path)
BASELINES = {"all_background": all_background, "first_label": first_label}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--dataset", default="auto", help="dataset name, or auto (detected from the root)")
    p.add_argument("--split", default="val")
    p.add_argument("--contour", action=argparse.BooleanOptionalAction, default=True,
                   help="also compute the contour F-score (definition icam)")
    p.add_argument("--out", default=None, help="write the results as JSON here (config next to it)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--overwrite", action="store_true", help="recompute even if --out exists")
    return p.parse_args(argv)


def summary(results):
    return ", ".join(f"{name} mIoU {r['miou']:.2f}" for name, r in results.items())


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    out = Path(args.out) if args.out else None
    if out is not None and out.is_file() and not args.overwrite:
        print(f"{out} exists: skipped (pass --overwrite to recompute); {summary(json.loads(out.read_text()))}")
        return 0
    name = detect_dataset(args.data) if args.dataset == "auto" else args.dataset
    dataset = build_dataset(name, args.data, args.split)
    job = EvalJob(gt=DatasetGT(dataset), pred_dir=None, contour=args.contour, workers=max(1, args.workers))
    results = {}
    for baseline, factory in BASELINES.items():
        _, result = evaluate_label_maps(job, factory(dataset), baseline)
        result.update(mode="baseline", baseline=baseline, dataset=name, split=args.split,
                      num_images=len(dataset.ids))
        results[baseline] = result
        print(f"== {baseline}")
        print(format_table(result))
    for line in protocol_notes(name, args.split, len(dataset.ids), "baseline"):
        print(line)
    if out is not None:
        write_json(out, results)
        save_config(vars(args) | {"dataset_resolved": name}, out.with_suffix(".config.yaml"))
    print(f"baselines of {name}/{args.split} ({len(dataset.ids)} images, {timer.seconds:.1f} s): {summary(results)}"
          + (f"; results -> {out}" if out else ""))
    return 0


if __name__ == "__main__":
    run_main(main)
