"""Throughput of the evaluator on a VOC-val-sized set: 1449 masks of 500x375, 21 classes.

    python benchmarks/eval_throughput.py [--n 1449] [--workers 1,2] [--out benchmarks/results/eval_throughput.json]

Masks are random scenes (1-4 ellipses of random classes on background, a 5-pixel void band on
object contours as in VOC); predictions perturb the shapes and sometimes the class. Timed:
(a) mIoU + per-class scores from arrays in memory, (b) the same from PNG files on disk
(decode included, thread pool), (c) the ICAM contour F-score over the same set. Target: (b)
under 3 s for the whole set.
"""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from wsss.data.io import save_index_png, write_json
from wsss.metrics import (DirectoryGT, EvalJob, confusion_matrix, contour_counts, evaluate,
                          summarize_confusion, summarize_contour)

H, W, K = 375, 500, 21


def make_pair(rng):
    """One (gt, pred) pair of uint8 label maps."""
    gt = np.zeros((H, W), np.uint8)
    pred = np.zeros((H, W), np.uint8)
    for _ in range(rng.integers(1, 5)):
        c = int(rng.integers(1, K))
        center = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        axes = (int(rng.integers(15, 160)), int(rng.integers(15, 140)))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(gt, center, axes, angle, 0, 360, c, -1)
        jitter = rng.integers(-12, 13, 4)
        pc = c if rng.random() < 0.85 else int(rng.integers(1, K))
        cv2.ellipse(pred, (center[0] + int(jitter[0]), center[1] + int(jitter[1])),
                    (max(1, axes[0] + int(jitter[2])), max(1, axes[1] + int(jitter[3]))), angle, 0, 360, pc, -1)
    band = cv2.morphologyEx(gt, cv2.MORPH_GRADIENT, np.ones((5, 5), np.uint8)) > 0
    gt[band] = 255
    return gt, pred


def timed(fn):
    """(wall seconds, process CPU seconds, result); CPU time is robust to other load on the machine."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return round(time.perf_counter() - t, 3), round(time.process_time() - c, 3), out


def in_memory(pairs):
    conf = sum(confusion_matrix(g, p, K) for g, p in pairs)
    return summarize_confusion(conf, ["background"] + [f"c{i}" for i in range(1, K)])


def contour(pairs):
    counts = sum(contour_counts(g, p, K) for g, p in pairs)
    return summarize_contour(counts, [f"c{i}" for i in range(1, K)])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1449)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval_throughput.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    pairs = [make_pair(rng) for _ in range(args.n)]
    names = ["background"] + [f"c{i}" for i in range(1, K)]

    t_mem, c_mem, res_mem = timed(lambda: in_memory(pairs))
    t_contour, c_contour, res_contour = timed(lambda: contour(pairs))
    disk = {}
    with tempfile.TemporaryDirectory() as tmp:
        ids = [f"{i:06d}" for i in range(args.n)]
        for image_id, (g, p) in zip(ids, pairs):
            save_index_png(Path(tmp) / "gt" / f"{image_id}.png", g)
            save_index_png(Path(tmp) / "pred" / f"{image_id}.png", p)
        gt = DirectoryGT(Path(tmp) / "gt", ids, names)
        for workers in (int(w) for w in args.workers.split(",")):
            for contour_on in (False, True):
                job = EvalJob(gt=gt, pred_dir=Path(tmp) / "pred", contour=contour_on, workers=workers,
                              progress=False)
                t, c, res = timed(lambda: evaluate(job, "png"))
                assert abs(res["miou"] - res_mem["miou"]) < 1e-9, "disk and memory results differ"
                disk[f"workers={workers}{' +contour' if contour_on else ''}"] = {"wall": t, "cpu": c}

    record = {
        "set": f"{args.n} masks {W}x{H}, {K} classes (seed {args.seed})",
        "miou": round(res_mem["miou"], 4),
        "contour_f": round(res_contour["mean_f"], 4),
        "seconds": {
            "in_memory_miou": {"wall": t_mem, "cpu": c_mem},
            "in_memory_contour_f": {"wall": t_contour, "cpu": c_contour},
            "disk_png": disk,
        },
        "target": "disk_png (mIoU + per-class) under 3 s for 1449 images",
        "note": "cpu = this process's CPU seconds (all threads); wall time depends on other load",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1min": round(os.getloadavg()[0], 2)},
    }
    write_json(args.out, record)
    best = min(v["wall"] for k, v in disk.items() if "contour" not in k)
    print(f"in memory: mIoU {t_mem:.2f} s (cpu {c_mem:.2f}), contour F {t_contour:.2f} s (cpu {c_contour:.2f}); "
          "from PNGs: " + ", ".join(f"{k} {v['wall']:.2f} s (cpu {v['cpu']:.2f})" for k, v in disk.items()))
    print(f"eval throughput: {args.n} images from disk in {best:.2f} s (target < 3 s): "
          f"{'OK' if best < 3 else 'SLOWER'}; results -> {args.out}")


if __name__ == "__main__":
    main()
