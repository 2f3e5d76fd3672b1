"""Sparse random walk (wsss.affinity.random_walk) vs the dense reference formula.

The dense reference is what psa/IRN compute: build the dense N x N affinity matrix, T =
A^beta / column sums, square T logt times, multiply the CAMs from the left. Both run on the
same inputs (a 448 x 448 image -> 112 x 112 stride-4 grid, radius 5, beta 10, logt 8, random
boundary map and CAMs), each in a fresh process so that its peak memory can be measured.

    python benchmarks/random_walk.py                 # the recorded run (448 px, 21 channels)
    python benchmarks/random_walk.py --size 224      # quicker

Writes benchmarks/results/random_walk.json; the last line printed is
``speedup: <dense s / sparse s> max_rel_diff: <max |sparse - dense| / max |dense|>``.
"""

import argparse
import multiprocessing
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from wsss.affinity.pairs import grid_affinities  # noqa: E402
from wsss.affinity.random_walk import random_walk  # noqa: E402
from wsss.data.io import write_json  # noqa: E402


def reference_dense_affinity(aff, offsets):
    """REFERENCE ONLY: the dense (N, N) affinity matrix of one image's (D, H, W) affinity maps."""
    d, h, w = aff.shape
    n = h * w
    dense = torch.eye(n, dtype=aff.dtype)
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for i, (dy, dx) in enumerate(offsets):
        ok = (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
        src = torch.from_numpy((ys * w + xs)[ok])
        dst = torch.from_numpy(((ys + dy) * w + xs + dx)[ok])
        val = aff[i][torch.from_numpy(ok)]
        dense[src, dst] = val
        dense[dst, src] = val
    return dense


def reference_dense_walk(x, aff, offsets, beta, logt):
    """REFERENCE ONLY (O(N^2) memory): ``x @ T^(2^logt)`` with T squared ``logt`` times, as psa/IRN do.

    ``x`` (K, H, W), ``aff`` (D, H, W); returns (K, H, W).
    """
    k, h, w = x.shape
    t = reference_dense_affinity(aff, offsets).pow(beta)
    t = t / t.sum(0, keepdim=True)
    for _ in range(logt):
        t = t @ t
    return (x.reshape(k, h * w) @ t).reshape(k, h, w)


def make_inputs(size, channels, radius, seed=0):
    """A blocky random boundary map and random CAMs on the stride-4 grid of a ``size`` image."""
    g = torch.Generator().manual_seed(seed)
    n = (size + 3) // 4
    coarse = torch.rand(1, 1, n // 8 + 1, n // 8 + 1, generator=g)
    regions = torch.nn.functional.interpolate(coarse, size=(n, n), mode="nearest")[0, 0]
    gy = (regions[1:, :] != regions[:-1, :]).float()
    gx = (regions[:, 1:] != regions[:, :-1]).float()
    edge = torch.zeros(n, n)
    edge[1:, :] = torch.maximum(edge[1:, :], gy)
    edge[:, 1:] = torch.maximum(edge[:, 1:], gx)
    edge = (0.8 * edge + 0.2 * torch.rand(n, n, generator=g)).clamp(0, 1)
    cams = torch.rand(1, channels, n, n, generator=g)
    aff, offsets = grid_affinities(edge[None], radius)
    return cams, aff, offsets


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _run(kind, args, queue):
    torch.set_num_threads(args["threads"])
    # the squared T fills with denormal floats, which slow CPU GEMM ~100x; flushing them only
    # speeds up the dense reference (values < 1e-38 against a max near 1)
    torch.set_flush_denormal(True)
    cams, aff, offsets = make_inputs(args["size"], args["channels"], args["radius"])
    base = _rss_mb()
    if kind == "dense":
        fn = lambda: reference_dense_walk(cams[0], aff[0], offsets, args["beta"], args["logt"])  # noqa: E731
    else:
        dtype = torch.float32 if kind == "sparse_fp32" else torch.float64
        fn = lambda: random_walk(cams, aff, offsets, args["beta"], args["logt"], dtype=dtype)[0]  # noqa: E731
    times = []
    with torch.no_grad():
        for _ in range(1 if kind == "dense" else args["repeats"]):
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            times.append((time.perf_counter() - t0, time.process_time() - c0))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    wall, cpu = min(times)
    queue.put({"seconds": wall, "cpu_seconds": cpu, "peak_extra_mb": max(peak - base, 0.0), "out": out.numpy()})


def measure(kind, args):
    """Run one method in a fresh process: its time, extra peak memory (MiB) and output."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(kind, args, queue))
    proc.start()
    res = queue.get()
    proc.join()
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=448, help="image side; the walk runs on the stride-4 grid")
    ap.add_argument("--channels", type=int, default=21, help="channels walked (psa walks bg + 20 classes)")
    ap.add_argument("--radius", type=int, default=5)
    ap.add_argument("--beta", type=float, default=10)
    ap.add_argument("--logt", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of both runs")
    ap.add_argument("--repeats", type=int, default=3, help="sparse runs (best kept); dense runs once")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/random_walk.json"))
    args = vars(ap.parse_args(argv))
    out = args.pop("out")
    res = {}
    for kind in ("sparse", "sparse_fp32", "dense"):
        res[kind] = r = measure(kind, args)
        print(f"{kind:12s} wall {r['seconds']:8.3f} s  cpu {r['cpu_seconds']:8.3f} s  "
              f"peak +{r['peak_extra_mb']:.0f} MiB", flush=True)
    dense = res["dense"]["out"]

    def summary(r):
        return {"seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"], "peak_extra_mib": r["peak_extra_mb"],
                "max_rel_diff_vs_dense": float(np.abs(r["out"] - dense).max() / np.abs(dense).max())}

    grid = (args["size"] + 3) // 4
    result = {
        "inputs": dict(args, grid=f"{grid}x{grid}", nodes=grid * grid),
        "sparse": dict(summary(res["sparse"]), dtype="float64 (library default)"),
        "sparse_fp32": dict(summary(res["sparse_fp32"]), dtype="float32"),
        "dense_reference": dict(summary(res["dense"]), dtype="float32 (as psa/IRN)",
                                dense_matrix_mib=grid ** 4 * 4 / 2**20),
        # CPU seconds: the shared development machine is oversubscribed, which inflates wall time
        "speedup": res["dense"]["cpu_seconds"] / res["sparse"]["cpu_seconds"],
        "speedup_wall": res["dense"]["seconds"] / res["sparse"]["seconds"],
        "speedup_fp32": res["dense"]["cpu_seconds"] / res["sparse_fp32"]["cpu_seconds"],
        "max_rel_diff": summary(res["sparse"])["max_rel_diff_vs_dense"],
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "threads": args["threads"]},
        "command": "python benchmarks/random_walk.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    write_json(out, result)
    print(f"speedup: {result['speedup']:.1f} max_rel_diff: {result['max_rel_diff']:.2e}")


if __name__ == "__main__":
    main()
