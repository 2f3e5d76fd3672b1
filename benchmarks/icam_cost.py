"""ICAM's per-step cost: its training step against vanilla CAM's at the same input size, and the
time and peak memory of its feature-similarity loss, exact in blocks against the dense matrices.

    flock /tmp/wsss-heavy.lock python benchmarks/icam_cost.py --out benchmarks/results/icam_cost.json

1. Training step (forward + backward of ``training_step``, no optimizer) on a batch of
   ``--batch`` random 128 px images with the synthetic configs' network (ResNet-18 width 32):
   vanilla CAM as shipped (output stride 16), vanilla CAM at output stride 8 (ICAM's grid: the
   like-for-like control), and ICAM as shipped (stride 8, both views, every term), plus ICAM
   without the feature-similarity term and without the sampler, to show where the time goes.
   Median of ``--steps`` timed steps after 2 warm-up steps, all in this process, in turns.
2. Feature similarity at ICAM's VOC grid (448 px crop at stride 8: 56 x 56 cells, 21 channels,
   sigma 5), forward + backward, each variant in a fresh subprocess: the dense reference
   formula (every (hw)^2 matrix kept for autograd), the exact loss in blocks of 1024 and 256
   rows (wsss/cams/feature_similarity.py) and the window of radius 20 = 4 sigma. Peak memory =
   the process's maximum resident set size (``ru_maxrss``) minus its size just before the loss.
   The window's error is measured on smooth maps (blurred random logits) over the colours of a
   synthetic image, relative to the exact value, next to its bound (docs/methods/icam.md).

CPU timings on a shared machine are noisy: the ratios of one run are the comparable figures.
"""

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsss.cams import build_method  # noqa: E402
from wsss.cams.feature_similarity import (feature_similarity, feature_similarity_dense,  # noqa: E402
                                          window_error_bound)
from wsss.cli import run_main  # noqa: E402
from wsss.config import load_config  # noqa: E402
from wsss.data.io import write_json  # noqa: E402
from wsss.data.synthetic import render_sample  # noqa: E402
from wsss.engine import StepContext  # noqa: E402

STEP_VARIANTS = {  # name -> (config, overrides)
    "cam (OS16, as shipped)": ("cam", {}),
    "cam (OS8)": ("cam", {"model.output_stride": 8}),
    "icam (OS8, as shipped)": ("icam", {}),
    "icam without FS": ("icam", {"method.fs_weight": 0.0}),
    "icam without sampling (GAP only)": ("icam", {"method.loss_weight": 0.0}),
}
FS_VARIANTS = {"dense": {}, "exact, chunk 1024": {"chunk": 1024}, "exact, chunk 256": {"chunk": 256},
               "window 20 (4 sigma)": {"window": 20.0}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16, help="images per training step")
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fs-batch", type=int, default=2, help="images of the feature-similarity measurement")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/icam_cost.json"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one FS variant in a fresh process
    return p.parse_args(argv)


def set_dotted(cfg, key, value):
    *path, last = key.split(".")
    for k in path:
        cfg = cfg.setdefault(k, {})
    cfg[last] = value


def step_times(args):
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 128, 128)
    y = (torch.rand(args.batch, 8) < 0.3).float()
    y[:, 0] = 1.0
    tasks = {}
    for name, (config, over) in STEP_VARIANTS.items():
        cfg = load_config(ROOT / f"configs/synthetic/{config}.yaml")
        for k, v in over.items():
            set_dotted(cfg, k, v)
        tasks[name] = build_method(config, cfg, 8).train()
    times = {name: [] for name in tasks}
    for rnd in range(args.steps + 2):  # in turns, so load changes hit every variant alike
        for name, task in tasks.items():
            task.zero_grad(set_to_none=True)
            start = time.perf_counter()
            task.training_step({"image": x, "label": y}, StepContext())["loss"].backward()
            if rnd >= 2:
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["cam (OS8)"])
    return {name: {"median_s": round(statistics.median(t), 4), "steps_s": [round(v, 4) for v in t],
                   "vs_cam_os8": round(statistics.median(t) / base, 2),
                   "vs_cam_os16": round(statistics.median(t) / statistics.median(times["cam (OS16, as shipped)"]), 2)}
            for name, t in times.items()}


def fs_inputs(n, size=56, k=21, seed=0):
    """Colours of synthetic images at the grid and smooth probability maps (blurred logits)."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.from_numpy(render_sample(0, i, 448, "val").image).permute(2, 0, 1).float() / 255 for i in range(n)]
    colours = F.interpolate(torch.stack(images), size=(size, size), mode="bilinear", align_corners=True)
    logits = torch.randn(n, k, size // 4, size // 4, generator=g) * 4
    logits = F.interpolate(logits, size=(size, size), mode="bicubic", align_corners=True)
    return colours, logits


def fs_child(name, n):
    """One FS variant: forward + backward time and peak RSS growth (KiB) in this process."""
    colours, logits = fs_inputs(n)
    logits.requires_grad_(True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    probs = logits.softmax(1)
    opts = FS_VARIANTS[name]
    value = (feature_similarity_dense(colours, probs, 2.5, 5.0) if name == "dense"
             else feature_similarity(colours, probs, 2.5, 5.0, **opts))
    value.backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    grad = logits.grad
    return {"seconds": round(seconds, 3), "peak_rss_growth_mib": round((peak - before) / 1024, 1),
            "value": float(value.detach()), "grad_norm": float(grad.norm())}


def fs_costs(args):
    out = {}
    for name in FS_VARIANTS:
        cmd = [sys.executable, __file__, "--child", name, "--fs-batch", str(args.fs_batch), "--threads",
               str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    exact = out["exact, chunk 1024"]["value"]
    for name, r in out.items():
        r["abs_error_vs_exact"] = abs(r["value"] - exact)
        r["rel_error_vs_exact"] = abs(r["value"] - exact) / abs(exact)
    out["window 20 (4 sigma)"]["error_bound"] = window_error_bound(5.0, 20.0)
    return out


def window_errors(n=4):
    """Measured error of windows of several radii against the exact loss, and their bounds."""
    colours, logits = fs_inputs(n, seed=1)
    probs = logits.softmax(1)
    with torch.no_grad():
        exact = float(feature_similarity(colours, probs, 2.5, 5.0))
        rows = {}
        for radius in (5.0, 10.0, 15.0, 20.0):
            approx = float(feature_similarity(colours, probs, 2.5, 5.0, window=radius))
            rows[f"{radius:g}"] = {"abs_error": abs(approx - exact), "rel_error": abs(approx - exact) / abs(exact),
                                   "bound": window_error_bound(5.0, radius)}
    return {"exact": exact, "images": n, "radius": rows}


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(fs_child(args.child, args.fs_batch)))
        return 0
    command = " ".join([Path(sys.executable).name, *sys.argv]) if argv is None else " ".join(argv)
    steps = step_times(args)
    fs = fs_costs(args)
    window = window_errors()
    write_json(args.out, {
        "benchmark": "icam_cost", "command": command, "threads": args.threads,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or None,
                    "torch": torch.__version__, "device": "cpu"},
        "training_step": {"batch": args.batch, "size": 128, "network": "resnet18 width 32 (configs/synthetic)",
                          "timed_steps": args.steps, "variants": steps},
        "feature_similarity": {"grid": "56 x 56 (448 px at stride 8)", "channels": 21, "sigma": 5.0,
                               "images": args.fs_batch, "variants": fs},
        "window_error": window,
    })
    icam = steps["icam (OS8, as shipped)"]
    print(f"icam step {icam['vs_cam_os8']:.2f}x cam at OS8 ({icam['vs_cam_os16']:.2f}x cam at OS16); FS peak "
          f"{fs['exact, chunk 1024']['peak_rss_growth_mib']:.0f} MiB exact vs {fs['dense']['peak_rss_growth_mib']:.0f} "
          f"MiB dense -> {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
