"""Dense-CRF throughput of wsss.postprocess.crf at 1 and 2 worker processes.

Each job is one VOC-sized image (500 x 375, a few coloured regions with noise) and a noisy
3-label map, refined by the label CRF of the affinity labels (``irn`` preset: t 10, gaussian
3/3, bilateral 50/5/10, gt_prob 0.7), as tools/make_affinity_labels.py runs it. The pool's
outputs are checked to equal the single process's.

    python benchmarks/crf_throughput.py            # 24 images, workers 1 and 2

Writes benchmarks/results/crf_throughput.json; the last line printed is
``crf images/s: 1 worker <a>, 2 workers <b> (x<b/a>)``.
"""

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from wsss.data.io import write_json  # noqa: E402
from wsss.parallel import parallel_map  # noqa: E402
from wsss.postprocess.crf import crf_from_labels  # noqa: E402


def make_job(seed, h=375, w=500, n_labels=3):
    """A blocky colour image and its region labels with 20% of the pixels flipped."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, n_labels, (6, 8))
    regions = np.kron(coarse, np.ones((h // 6 + 1, w // 8 + 1), np.int64))[:h, :w]
    colours = rng.integers(0, 256, (n_labels, 3))
    image = np.clip(colours[regions] + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    noisy = np.where(rng.random((h, w)) < 0.2, rng.integers(0, n_labels, (h, w)), regions)
    return image, noisy, regions


def crf_job(preset, seed):
    image, noisy, _ = make_job(seed)
    return crf_from_labels(image, noisy, 3, preset)


def _cpu_seconds():
    """CPU time of this process and of its finished children (the pool's workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(workers, n):
    t0, c0 = time.perf_counter(), _cpu_seconds()
    out = list(parallel_map(crf_job, range(n), workers=workers, state="irn"))
    return time.perf_counter() - t0, _cpu_seconds() - c0, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/crf_throughput.json"))
    args = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    runs = {}
    for workers in (1, 2):
        seconds, cpu, out = run(workers, args.images)
        runs[workers] = {"seconds": seconds, "cpu_seconds": cpu, "images_per_s": args.images / seconds, "out": out}
        print(f"{workers} worker(s): {seconds:.2f} s, {args.images / seconds:.2f} images/s "
              f"({cpu / args.images:.3f} CPU s per image)", flush=True)
    same = all(np.array_equal(a, b) for a, b in zip(runs[1]["out"], runs[2]["out"]))
    acc = float(np.mean([(o == make_job(s)[2]).mean() for s, o in enumerate(runs[1]["out"])]))
    result = {
        "images": args.images, "image_size": "500x375", "labels": 3, "preset": "irn (t 10)",
        "workers": {str(w): {"seconds": r["seconds"], "images_per_s": r["images_per_s"],
                             "cpu_seconds_per_image": r["cpu_seconds"] / args.images} for w, r in runs.items()},
        "speedup_2_workers": runs[1]["seconds"] / runs[2]["seconds"],
        "pool_equals_single_process": same,
        "pixel_accuracy_vs_clean_regions": acc,
        # wall-clock rates depend on the machine's load (2 shared cores here): see load_average_*
        "cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
        "machine": platform.processor() or platform.machine(),
        "command": "python benchmarks/crf_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    write_json(args.out, result)
    if not same:
        raise SystemExit("the pool's output differs from the single process's")
    print(f"crf images/s: 1 worker {runs[1]['images_per_s']:.2f}, 2 workers {runs[2]['images_per_s']:.2f} "
          f"(x{result['speedup_2_workers']:.2f})")


if __name__ == "__main__":
    main()
