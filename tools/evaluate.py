"""Score predictions of a split against its ground truth: mIoU, per-class table, contour F.

    python tools/evaluate.py --data data/voc --split train --pred experiments/pnoc/cams --mode cam
    python tools/evaluate.py --data data/voc --split val --pred experiments/seg/pred --mode png \
        --out experiments/seg/eval_val.json

Modes (registry ``wsss.metrics.MODES``): ``png`` scores index PNGs ``<pred>/<id>.png``;
``cam`` scores CAM files ``<pred>/<id>.npz`` (or P-NOC ``.npy``) by padding a background channel
at threshold t and taking the argmax, sweeping ``--thresholds a:b:step`` (b included) and
reporting the best t and the curve (CAM files that store their method's background map,
``hr_cam_bg``, are scored against it instead, without a sweep, unless ``--ignore-stored-background``:
then their foreground channels are swept like any other; the JSON's ``protocol`` says which,
``stored-background`` or ``sweep``); ``saliency`` scores 0..255
gray PNGs ``<pred>/<id>.png`` (any folder, made here or elsewhere) as binary foreground/background, foreground where value/255 > t,
with the same sweep (wsss/metrics/saliency.py). mIoU follows PuzzleCAM / P-NOC (confusion matrix over the
whole split, 255 ignored, mean over all classes incl. background); the contour F-score follows
ICAM (``--contour-definition icam``). All numbers are percentages; the last printed line is
``mIoU: <percent, 2 decimals>``.
"""

import argparse
import json
import os
from pathlib import Path

from wsss.cli import Timer, run_main
from wsss.config import save_config
from wsss.data import build_dataset, detect_dataset
from wsss.data.io import write_json
from wsss.errors import ConfigError
from wsss.metrics import (CONTOUR_DEFINITIONS, DEFAULT_THRESHOLDS, MODES, DatasetGT, EvalJob, evaluate,
                          format_curve, format_table, parse_thresholds, protocol_notes)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--dataset", default="auto", help="dataset name, or auto (detected from the root)")
    p.add_argument("--split", required=True, help="split list name, e.g. train, val")
    p.add_argument("--pred", required=True, help="directory of predictions (PNGs or CAM files)")
    p.add_argument("--mode", default="png", help=f"one of {', '.join(MODES.names())}")
    p.add_argument("--thresholds", default=DEFAULT_THRESHOLDS,
                   help="thresholds swept by the cam and saliency modes: a:b:step (b included) or t1,t2,...")
    p.add_argument("--ignore-stored-background", action="store_true",
                   help="cam mode: sweep the threshold also over CAM files that store a background map "
                        "(their foreground channels; default: score them against their background)")
    p.add_argument("--contour", action=argparse.BooleanOptionalAction, default=True,
                   help="also compute the contour F-score (default: on)")
    p.add_argument("--contour-definition", default="icam", help="contour F-score definition (icam)")
    p.add_argument("--out", default=None, help="write the results as JSON here (config next to it)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="threads")
    p.add_argument("--overwrite", action="store_true", help="recompute even if --out exists")
    return p.parse_args(argv)


def print_report(result, dataset_name, split):
    if result.get("curve"):
        print(format_curve(result))
        print(f"best threshold: {result['threshold']:.2f}")
    print(format_table(result))
    for line in protocol_notes(dataset_name, split, result["num_images"], result["mode"],
                               len(result.get("curve") or [])):
        print(line)


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    MODES.get(args.mode)  # fail fast on an unknown mode
    CONTOUR_DEFINITIONS.get(args.contour_definition)
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    out = Path(args.out) if args.out else None
    if out is not None and out.is_file() and not args.overwrite:
        result = json.loads(out.read_text())
        print(f"{out} exists: skipped (pass --overwrite to recompute)")
        print(f"mIoU: {result['miou']:.2f}")
        return 0

    name = detect_dataset(args.data) if args.dataset == "auto" else args.dataset
    dataset = build_dataset(name, args.data, args.split)
    job = EvalJob(gt=DatasetGT(dataset), pred_dir=Path(args.pred), contour=args.contour,
                  contour_definition=args.contour_definition, workers=args.workers,
                  thresholds=parse_thresholds(args.thresholds),
                  stored_background=not args.ignore_stored_background)
    result = evaluate(job, args.mode)
    result.update(dataset=name, split=args.split, data=str(args.data), pred=str(args.pred))
    first = ("miou", "mode", "protocol", "dataset", "split", "num_images", "threshold", "contour_f")
    result = {k: result[k] for k in first if k in result} | result  # headline keys first in the JSON

    print_report(result, name, args.split)
    if out is not None:
        write_json(out, result)
        save_config(vars(args) | {"dataset_resolved": name}, out.with_suffix(".config.yaml"))
    cf = result.get("contour_f")
    print(f"evaluated {result['num_images']} images of {name}/{args.split} ({args.mode}) in {timer.seconds:.1f} s"
          + (f", contour F {cf['mean_f']:.2f}" if cf else "")
          + (f", threshold {result['threshold']:.2f}" if "threshold" in result else "")
          + (", against the stored background" if result.get("protocol") == "stored-background" else "")
          + (f"; results -> {out}" if out else ""))
    print(f"mIoU: {result['miou']:.2f}")
    return 0


if __name__ == "__main__":
    run_main(main)
