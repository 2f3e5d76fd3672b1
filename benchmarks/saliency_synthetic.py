"""Saliency stage on the built-in synthetic benchmark: C2AM-H and PoolNet against trivial baselines.

    python benchmarks/saliency_synthetic.py --data data/synthetic --priors experiments/synthetic_cam \
        --work /tmp/saliency_bench --out benchmarks/results/saliency_synthetic.json

Protocol: ``runners/2-saliency.sh`` with ``EXP_ROOT=--work`` and ``PRIORS=--priors`` (a stage-1
CAM experiment with ``cams/<train split>`` and ``cams/<eval split>``) trains C2AM-H on the CAM
hints and PoolNet on the C2AM-H masks, writes their maps and scores them, with the baselines
``all-fg``, ``all-bg`` and ``cam-max`` (max foreground CAM), by ``tools/evaluate.py --mode
saliency``: binary fg/bg mIoU (%), threshold swept 0.05..0.80 on the ground truth (0/255 masks
score the same at every threshold). The runner also scores C2AM-H's activation (before the
threshold and the dCRF) and binarizes it at the best threshold of the TRAINING split's sweep
(``infer.threshold: best``). This script collects everything, with training times and the
command, into ``--out`` (JSON, written atomically). Stage outputs in ``--work`` are reused (e.g.
a finished ``runners/demo.sh`` folder) unless ``--overwrite``.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.stage_run import run_record, sh  # noqa: E402
from wsss.cli import run_main  # noqa: E402
from wsss.data.io import write_json  # noqa: E402
from wsss.errors import DataError  # noqa: E402

DEFINITION = ("binary fg/bg mIoU (%): ground truth foreground = any class, 255 ignored; prediction foreground "
              "where png/255 > t; confusion summed over the split; mean of the bg and fg IoUs; best t of "
              "0.05..0.80 (tools/evaluate.py --mode saliency)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic", help="synthetic dataset root")
    p.add_argument("--priors", required=True, help="stage-1 CAM experiment (checkpoints/last.pth, cams/<split>)")
    p.add_argument("--work", default="/tmp/saliency_bench", help="experiments folder of this benchmark")
    p.add_argument("--split", default="val", help="evaluation split")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/saliency_synthetic.json"))
    p.add_argument("--overwrite", action="store_true", help="redo every stage")
    return p.parse_args(argv)



def training(exp):
    epochs = [json.loads(line) for line in (exp / "metrics.jsonl").read_text().splitlines()
              if '"kind": "epoch"' in line]
    return {"epochs": len(epochs), "seconds": round(sum(e["seconds"] for e in epochs), 1),
            "final_loss": round(epochs[-1]["loss"], 4) if epochs else None}


def score(path):
    r = json.loads(Path(path).read_text())
    return {"miou": round(r["miou"], 2), "threshold": r["threshold"],
            "iou_background": round(r["per_class"]["background"]["iou"], 2),
            "iou_foreground": round(r["per_class"]["foreground"]["iou"], 2)}


def main(argv=None):
    args = parse_args(argv)
    work, data, priors = Path(args.work), Path(args.data), Path(args.priors)
    for need in (priors / "checkpoints/last.pth", priors / "cams" / args.split):
        if not need.exists():
            raise DataError("stage-1 output not found", path=need, fix="run runners/1-priors.sh (or set --priors)")
    py = sys.executable
    env = {**os.environ, "DATASET": "synthetic", "DATA_ROOT": str(data), "EXP_ROOT": str(work),
           "PRIORS": str(priors), "EVAL_SPLITS": args.split, "PYTHON": py,
           "OVERWRITE": "1" if args.overwrite else "0"}
    start = time.perf_counter()
    sh(["bash", "runners/2-saliency.sh"], env=env)
    wall = time.perf_counter() - start
    ccamh, poolnet = work / "synthetic_ccamh", work / "synthetic_poolnet"
    t = (ccamh / "threshold.txt").read_text().strip() if (ccamh / "threshold.txt").is_file() else "config"
    results = {
        f"C2AM-H (0/255 masks: t {t} from the training sweep + dCRF)": score(ccamh / f"eval_saliency_{args.split}.json"),
        "C2AM-H activation (before t + dCRF)": score(ccamh / f"eval_activation_{args.split}.json"),
        "PoolNet (on the C2AM-H masks)": score(poolnet / f"eval_saliency_{args.split}.json"),
        "baseline: max foreground CAM": score(priors / "cam_max" / f"eval_saliency_{args.split}.json"),
        "baseline: all foreground": score(work / "synthetic_saliency_all-fg" / f"eval_saliency_{args.split}.json"),
        "baseline: all background": score(work / "synthetic_saliency_all-bg" / f"eval_saliency_{args.split}.json"),
    }
    meta = json.loads((data / "meta.json").read_text()) if (data / "meta.json").is_file() else {}
    out = {
        "benchmark": "saliency_synthetic",
        "split": args.split,
        "metric": DEFINITION,
        "results": results,
        "training": {"C2AM-H": training(ccamh), "PoolNet": training(poolnet)},
        "runner_wall_seconds_this_call": round(wall, 1),
        "dataset": meta.get("config", {"root": str(data)}),
        "priors": str(priors),
        "configs": ["configs/synthetic/ccam.yaml", "configs/synthetic/poolnet.yaml"],
        **run_record(),
    }
    write_json(args.out, out)
    width = max(len(k) for k in results)
    for k, v in results.items():
        print(f"{k:<{width}}  mIoU {v['miou']:6.2f}  (t {v['threshold']:.2f})")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
