"""One random walk of a VOC-size image (500 x 375 -> a 94 x 125 stride-4 grid) in this process:
wsss's sparse ``wsss.affinity.random_walk.propagate`` or the P-NOC reference's dense
``core.aff_utils.propagate_to_edge`` (IRN's formulation: the (hw)^2 transition matrix squared
``exp_times`` times). Same inputs on both sides (a blocky boundary map and CAMs made here with
numpy from a seed). Prints and writes ``{"seconds", "peak_rss_mib", "extra_rss_mib", ...}``: the
process's peak resident memory, and its rise over the memory held once the inputs exist.
Started by vs_reference.py, one fresh process per measurement.

    python benchmarks/ref_walk.py --side wsss --out OUT.json
    /tmp/refvenv/bin/python benchmarks/ref_walk.py --side ref --pnoc /tmp/ref/PNOC --logt 1 --out OUT.json
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def inputs(h, w, channels, seed=0):
    """(channels, h, w) CAMs in [0, 1] and a (1, h, w) boundary map of blocky regions."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((h // 8 + 1, w // 8 + 1))
    regions = np.kron(coarse, np.ones((8, 8)))[:h, :w]
    edge = np.zeros((h, w), np.float32)
    edge[1:, :] = np.maximum(edge[1:, :], regions[1:, :] != regions[:-1, :])
    edge[:, 1:] = np.maximum(edge[:, 1:], regions[:, 1:] != regions[:, :-1])
    edge = np.clip(0.8 * edge + 0.2 * rng.random((h, w)), 0, 1).astype(np.float32)
    cams = rng.random((channels, h, w)).astype(np.float32)
    return cams, edge[None]


def rss_mib():
    with open("/proc/self/statm") as f:
        import os

        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", choices=("wsss", "ref"), required=True)
    ap.add_argument("--pnoc", default="/tmp/ref/PNOC")
    ap.add_argument("--height", type=int, default=375)
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--channels", type=int, default=3, help="walked maps (P-NOC: background + present classes)")
    ap.add_argument("--beta", type=float, default=10)
    ap.add_argument("--logt", type=int, default=8, help="wsss logt = P-NOC exp_times (2^logt steps)")
    ap.add_argument("--radius", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    h, w = (args.height + 3) // 4, (args.width + 3) // 4
    cams, edge = inputs(h, w, args.channels)
    cams, edge = torch.from_numpy(cams), torch.from_numpy(edge)
    if args.side == "ref":
        sys.path.insert(0, str(args.pnoc))
        from core.aff_utils import propagate_to_edge

        if not torch.cuda.is_available():  # the reference moves its path indices with .cuda()
            torch.Tensor.cuda = lambda self, *a, **k: self

        def fn():
            return propagate_to_edge(cams, edge, radius=args.radius, beta=args.beta, exp_times=args.logt)[:, 0]
    else:
        sys.path.insert(0, str(ROOT))
        from wsss.affinity.random_walk import propagate

        def fn():
            return propagate(cams[None], edge, beta=args.beta, logt=args.logt, radius=args.radius)[0]
    base = rss_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = {"side": args.side, "grid": f"{h}x{w}", "nodes": h * w, "channels": args.channels, "logt": args.logt,
           "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), "peak_rss_mib": round(peak, 1),
           "extra_rss_mib": round(max(peak - base, 0.0), 1), "out_sum": float(out.double().sum())}
    Path(args.out).write_text(json.dumps(res) + "\n")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
