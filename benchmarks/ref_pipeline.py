"""The training data pipeline alone, in one process: images / s of what one DataLoader worker
does (read, decode, augment, collate) for a row of train_step.py, on wsss's side or the P-NOC
reference's (built with the reference's own dataset and transform functions, as its training
script builds them; wsss's as ``wsss.stage.train_stage`` builds it, whose data check derives
the image labels before the loader starts). Started by train_step.py; prints and writes one
JSON object.

    python benchmarks/ref_pipeline.py --side wsss --row cam --data DATA --out OUT.json
    /tmp/refvenv/bin/python benchmarks/ref_pipeline.py --side ref --row cam --data DATA \
        --pnoc /tmp/ref/PNOC --shims /tmp/ref/shims --out OUT.json
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def reference_dataset(args):
    sys.path[:0] = [str(args.pnoc), str(args.shims)]
    import datasets  # the reference's package

    lo, hi = (int(v) for v in args.resize_long.split(","))
    if args.row == "ccamh":
        ts = datasets.custom_data_source("voc12", f"{args.data}/", "bench_train", masks_dir=f"{args.data}/cams_npy/",
                                         split="train")
        tt, _ = datasets.get_ccam_transforms(int(args.crop * 1.15), args.crop)
        return datasets.CAMsDataset(ts, transform=tt), None
    ts = datasets.custom_data_source("voc12", f"{args.data}/", "bench_train", split="train")
    tt, _ = datasets.get_classification_transforms(lo, hi, args.crop, "", ts.classification_info.normalize_stats)
    return datasets.ClassificationDataset(ts, transform=tt), None


def wsss_dataset(args):
    sys.path.insert(0, str(ROOT))
    dataset, collate = wsss_train_dataset(args)
    from wsss.data.check import check_split

    check_split(dataset)  # as train_stage does: the labels are known before the loader starts
    return dataset, collate


def wsss_train_dataset(args):
    from wsss.cams import METHODS
    from wsss.config import load_config
    from wsss.data import collate
    from wsss.saliency import SALIENCY_TASKS

    lo, hi = (int(v) for v in args.resize_long.split(","))
    data = {"dataset": "voc", "root": args.data, "train_split": "train"}
    if args.row == "ccamh":
        cfg = load_config(ROOT / "configs/voc/ccam.yaml", [f"augment.resize_square={int(args.crop * 1.15)}",
                                                           f"augment.crop={args.crop}", f"method.cam_dir={args.data}/cams"])
        return SALIENCY_TASKS.get("ccam").train_dataset(cfg, data), collate
    cfg = load_config(ROOT / "configs/voc/cam.yaml", [f"augment.resize_long=[{lo},{hi}]", f"augment.crop={args.crop}"])
    # P-NOC's generator reads the same pipeline as vanilla CAM (PuzzleOC.train_dataset adds a check only)
    return METHODS.get("cam").train_dataset(cfg, data), collate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", choices=("wsss", "ref"), required=True)
    ap.add_argument("--row", choices=("cam", "pnoc", "ccamh"), required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--pnoc", default="/tmp/ref/PNOC")
    ap.add_argument("--shims", default="/tmp/ref/shims")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--resize-long", default="160,320")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    import torch
    from torch.utils.data import DataLoader

    torch.set_num_threads(1)  # as inside a DataLoader worker
    dataset, collate = (reference_dataset if args.side == "ref" else wsss_dataset)(args)
    random.seed(0)
    torch.manual_seed(0)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=0, drop_last=True,
                        **({"collate_fn": collate} if collate else {}))
    next(iter(loader))  # warm-up: imports, first file reads
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while n < args.images:
        for _ in loader:
            n += args.batch_size
            if n >= args.images:
                break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    res = {"images": n, "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
           "images_per_s": round(n / wall, 3), "images_per_cpu_s": round(n / cpu, 3)}
    Path(args.out).write_text(json.dumps(res) + "\n")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
