"""Random-walk stage on the built-in synthetic benchmark: pseudo masks against the CAMs they start from.

    python benchmarks/rw_synthetic.py --data data/synthetic --work experiments/demo \
        --out benchmarks/results/rw_synthetic.json

Protocol: ``runners/3-rw.sh`` with ``EXP_ROOT=--work`` (stage 1's P-NOC CAMs in
``<work>/synthetic_pnoc``, stage 2's PoolNet maps when present; finished work is reused, e.g. a
``runners/demo.sh`` folder) makes affinity labels, trains AffinityNet, walks the CAMs of the
training split and scores both with ``tools/evaluate.py``: the CAMs at their best threshold
(``--mode cam``), the pseudo masks as they are (``--mode png``). With ``--gt-upper-bound`` the
same AffinityNet is also trained on the ground-truth masks as affinity labels (an oracle: not a
weakly supervised result) and walks the same CAMs, which separates the walk from its labels.
Everything goes into ``--out`` (JSON, written atomically).
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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic", help="synthetic dataset root")
    p.add_argument("--work", default="experiments", help="experiments folder of runners 1-3 (EXP_ROOT)")
    p.add_argument("--split", default="train", help="training split (the pseudo masks' split)")
    p.add_argument("--gt-upper-bound", action="store_true", help="also train AffinityNet on ground-truth labels")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/rw_synthetic.json"))
    return p.parse_args(argv)



def score(path):
    r = json.loads(Path(path).read_text())
    return {"miou": round(r["miou"], 2), "threshold": r.get("threshold")}


def main(argv=None):
    args = parse_args(argv)
    work, data = Path(args.work), Path(args.data)
    py = sys.executable
    env = {**os.environ, "DATASET": "synthetic", "DATA_ROOT": str(data), "EXP_ROOT": str(work),
           "EVAL_SPLITS": args.split}
    start = time.perf_counter()
    sh(["bash", "runners/3-rw.sh"], env=env)
    wall = time.perf_counter() - start
    rw, cams = work / "synthetic_rw", work / "synthetic_pnoc" / "cams" / args.split
    results = {"CAMs (P-NOC, best threshold)": score(rw / f"eval_cam_{args.split}.json"),
               "pseudo masks (random walk)": score(rw / f"eval_rw_{args.split}.json")}
    if args.gt_upper_bound:
        gt = work / "synthetic_rw_gt_labels"
        init = [f"model.backbone_init={work / 'synthetic_pnoc/checkpoints/last.pth'}",
                "model.backbone_init_prefix=net.backbone."]
        sh([py, "tools/train_affinity.py", "--config", "configs/synthetic/affinity.yaml", "--data", data,
            "--labels", data / "SegmentationClass", "--exp", gt, f"data.train_split={args.split}", *init])
        sh([py, "tools/infer_rw.py", "--exp", gt, "--split", args.split, "--data", data, "--cams", cams,
            "--out", gt / "pseudo" / args.split, "--workers", "2"])
        sh([py, "tools/evaluate.py", "--data", data, "--split", args.split, "--pred", gt / "pseudo" / args.split,
            "--mode", "png", "--no-contour", "--out", gt / f"eval_rw_{args.split}.json"])
        results["oracle: pseudo masks, AffinityNet on ground-truth labels"] = score(gt / f"eval_rw_{args.split}.json")
    out = {
        "benchmark": "rw_synthetic",
        "split": args.split,
        "metric": "mIoU (%) of the split's ground truth, background included; CAMs at their best threshold",
        "results": results,
        "rw_beats_cams": results["pseudo masks (random walk)"]["miou"] > results["CAMs (P-NOC, best threshold)"]["miou"],
        "runner_wall_seconds_this_call": round(wall, 1),
        "config": "configs/synthetic/affinity.yaml",
        "saliency": "PoolNet maps of runner 2 when present, else the saliency-free rule",
        **run_record(),
    }
    write_json(args.out, out)
    for k, v in results.items():
        print(f"{k:<58s} mIoU {v['miou']:6.2f}")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
