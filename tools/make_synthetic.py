"""Generate the built-in synthetic WSSS benchmark (VOC layout) with ``wsss.data.synthetic``.

    python tools/make_synthetic.py --out data/synthetic --seed 0 --train 2000 --val 300 --size 128

Reruns with the same arguments are skipped (``meta.json`` records them); ``--overwrite``
regenerates. ``meta.json`` is the effective config of the run plus the class design and
dataset statistics.
"""

import argparse

from wsss.cli import Timer, run_main
from wsss.data.synthetic import P_PREFERRED_BACKGROUND, default_workers, generate


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="data/synthetic", help="dataset root to write (default: data/synthetic)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, default=2000, help="number of training images")
    p.add_argument("--val", type=int, default=300, help="number of validation images")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (>= 32)")
    p.add_argument("--p-preferred", type=float, default=P_PREFERRED_BACKGROUND,
                   help=f"probability of a background preferred by a class of the image, the context prior "
                        f"(default {P_PREFERRED_BACKGROUND}; 0.125 = nearly uniform backgrounds)")
    p.add_argument("--workers", type=int, default=default_workers(), help="processes (default: min(2, CPUs))")
    p.add_argument("--overwrite", action="store_true", help="regenerate even if the dataset exists")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    res = generate(args.out, seed=args.seed, n_train=args.train, n_val=args.val, size=args.size,
                   workers=args.workers, overwrite=args.overwrite, p_preferred=args.p_preferred)
    state = "exists, skipped (--overwrite to redo)" if res["skipped"] else f"{res['written']} images written"
    print(f"synthetic: {args.train} train + {args.val} val, {args.size} px, seed {args.seed} -> {args.out}: "
          f"{state} in {timer.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
