"""Pseudo masks from score files: background padded at a threshold, argmax, optional label CRF.

    python tools/make_pseudo_masks.py --data data/synthetic --split train \
        --scores experiments/synthetic_rw/rw/train --threshold 0.35 --crf pnoc_rw \
        --out experiments/synthetic_rw/pseudo/train --workers 2

Reads any CAM-format files (``<id>.npz`` of this toolkit or P-NOC's ``.npy``: ``keys`` and the
image-size ``hr_cam``): the stage-1 CAMs, or the random walk's scores saved by
``tools/infer_rw.py --save-rw``. Per image: a constant background channel ``--threshold`` in
front of the class channels (or, for files that store one, the method's own background map
``hr_cam_bg``, which takes precedence), argmax, then (``--crf PRESET``) the label CRF of
``wsss.postprocess.crf`` with ``len(keys) + 1`` labels, as P-NOC's ``make_pseudo_labels.py``.
Writes ``<out>/<id>.png`` (index PNG, 0 = background, c + 1 = class c) atomically, skips
finished images unless ``--overwrite``, and saves its settings as ``<out>/config.yaml``.
"""

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wsss.cli import Timer, run_main
from wsss.config import save_config
from wsss.data import build_dataset, detect_dataset
from wsss.data.io import find_cam, load_cam, remove_stale_temporaries
from wsss.errors import ConfigError
from wsss.parallel import parallel_map
from wsss.postprocess.crf import CRF_PRESETS
from wsss.postprocess.pseudo import foreground_keys, pad_background, pseudo_mask_job


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--split", required=True, help="split to process, e.g. train")
    p.add_argument("--scores", required=True, help="folder of <id>.npz / .npy score files (CAM format)")
    p.add_argument("--out", required=True, help="output folder of <id>.png pseudo masks")
    p.add_argument("--threshold", default=None, type=float,
                   help="background score, e.g. 0.3 (needed unless the files store a background map)")
    p.add_argument("--crf", default="none", help=f"label-CRF preset: none, {', '.join(CRF_PRESETS.names())}")
    p.add_argument("--workers", type=int, default=1, help="processes for the CRF / PNG writing")
    p.add_argument("--overwrite", action="store_true", help="redo images whose mask exists")
    return p.parse_args(argv)


def index_maps(dataset, indices, score_dir, threshold):
    """Yield ``(dataset index, background-padded argmax (H, W) uint8, keys)`` per image; the
    background is the file's ``hr_cam_bg`` when it has one, else ``threshold``."""
    for i in indices:
        path = find_cam(score_dir, dataset.ids[i])
        data = load_cam(path)
        scores = data["hr_cam"]
        keys = foreground_keys(data["keys"], scores.shape[0], path=path)
        if "hr_cam_bg" in data:
            padded = pad_background(scores, background=data["hr_cam_bg"])
        elif threshold is None:
            raise ConfigError("this score file stores no background map and no --threshold was given", path=path,
                              fix="pass --threshold (e.g. the best threshold of tools/evaluate.py --mode cam)")
        else:
            padded = pad_background(scores, threshold=threshold)
        yield i, padded.argmax(0).astype(np.uint8), keys


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    if not Path(args.scores).is_dir():
        raise ConfigError("score folder not found", path=args.scores,
                          fix="run tools/infer_cam.py or tools/infer_rw.py --save-rw for this split")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise ConfigError(f"--threshold {args.threshold} is outside [0, 1]",
                          fix="scores are max-normalised; pick a background score in [0, 1]")
    crf = None if args.crf in ("none", "", "null") else {"preset": args.crf}
    if crf:
        CRF_PRESETS.get(args.crf)  # unknown preset: a clear error before any work
    name = detect_dataset(args.data)
    dataset = build_dataset(name, args.data, args.split)
    out = Path(args.out)
    remove_stale_temporaries(out)  # what a killed run left mid-write
    todo = [i for i in range(len(dataset)) if args.overwrite or not (out / f"{dataset.ids[i]}.png").is_file()]
    state = {"dataset": dataset, "out_dir": out, "crf": crf}
    fg = []
    jobs = parallel_map(pseudo_mask_job, index_maps(dataset, todo, args.scores, args.threshold),
                        workers=args.workers, state=state)
    for _, frac in tqdm(jobs, total=len(todo), desc=f"pseudo masks {args.split}", dynamic_ncols=True,
                        mininterval=1.0):
        fg.append(frac)
    save_config({"pseudo_masks": {"data": str(args.data), "dataset": name, "split": args.split,
                                  "scores": str(args.scores), "threshold": args.threshold, "crf": crf}},
                out / "config.yaml")
    bg = "stored" if args.threshold is None else args.threshold
    print(f"[make_pseudo_masks] {name}/{args.split}: {len(todo)} masks, {len(dataset) - len(todo)} skipped "
          f"(done before), bg {bg}, crf {args.crf}, fg {100 * float(np.mean(fg)) if fg else 0:.1f}%, "
          f"{timer.seconds:.1f}s -> {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
