"""Multi-scale CAMs of a split from a trained CAM experiment (``wsss.cams.inference``).

    python tools/infer_cam.py --exp experiments/voc_puzzle --split train --out experiments/voc_puzzle/cams/train
    torchrun --nproc_per_node=4 tools/infer_cam.py --exp ... --split train_aug   # shards the images

Writes ``<out>/<id>.npz`` (``keys``, ``cam`` at stride 4, ``hr_cam`` at image size, fp16;
``cam_bg``/``hr_cam_bg`` for methods with a background channel) atomically, skips images
already done unless ``--overwrite``, and saves the effective config as ``<out>/config.yaml``.
The method turns each image's views into CAMs (``CAMMethod.infer_cams``; default: scales
``infer.scales`` of the experiment's config (0.5, 1, 1.5, 2), each with its horizontal flip in
the same batch, summed and max-normalised). Only the trained checkpoint is read: the config's
ImageNet weights (``model.weights``) need not exist.
"""

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from wsss.cams import METHODS
from wsss.cams.inference import DEFAULT_SCALES, PyramidDataset, group_by_size
from wsss.cli import Timer, run_main
from wsss.config import load_config, save_config
from wsss.data import build_dataset, detect_dataset
from wsss.data.io import find_cam, save_cam
from wsss.engine import barrier, init_distributed, resolve_device, shard
from wsss.engine.distributed import all_reduce_sum, destroy
from wsss.errors import ConfigError

INFER_DEFAULTS = {"scales": list(DEFAULT_SCALES), "flip": True, "batch_size": 1, "num_workers": 2,
                  "amp": "none", "channels_last": True, "hr_stride": 16}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", required=True, help="experiment folder of tools/train_cam.py")
    p.add_argument("--split", required=True, help="split to infer, e.g. train, val")
    p.add_argument("--out", default=None, help="output folder (default: <exp>/cams/<split>)")
    p.add_argument("--data", default=None, help="dataset root (default: data.root of the experiment)")
    p.add_argument("--checkpoint", default=None, help="weights (default: <exp>/checkpoints/last.pth)")
    p.add_argument("--scales", default=None, help="comma-separated scales (default: infer.scales)")
    p.add_argument("--overwrite", action="store_true", help="recompute images whose CAM file exists")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value (e.g. infer.batch_size=4)")
    return p.parse_args(argv)


def resolve_config(args):
    exp = Path(args.exp)
    cfg = load_config(exp / "config.yaml", args.overrides)
    infer = cfg["infer"] = {**INFER_DEFAULTS, **(cfg.get("infer") or {})}
    if args.scales:
        try:
            infer["scales"] = [float(s) for s in args.scales.split(",")]
        except ValueError:
            raise ConfigError(f"--scales {args.scales!r} is not a comma-separated list of numbers") from None
    if args.data:
        cfg["data"]["root"] = args.data
    if cfg["data"].get("dataset", "auto") == "auto":
        cfg["data"]["dataset"] = detect_dataset(cfg["data"]["root"])
    return cfg


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    cfg = resolve_config(args)
    infer, data = cfg["infer"], cfg["data"]
    out = Path(args.out or Path(args.exp) / "cams" / args.split)
    rank, world = init_distributed()
    device = resolve_device(infer.get("device", "auto"))

    dataset = build_dataset(data["dataset"], data["root"], args.split)
    mine = shard(range(len(dataset)), rank, world)
    todo = [i for i in mine if args.overwrite or not find_cam(out, dataset.ids[i]).is_file()]
    ckpt = args.checkpoint or Path(args.exp) / "checkpoints" / "last.pth"
    task = METHODS.get(cfg["method"]["name"]).from_checkpoint(cfg, dataset.num_classes, ckpt)
    task.to(device).eval()
    if infer["channels_last"]:
        task.to(memory_format=torch.channels_last)
    settings = {"device": device, "amp": infer["amp"], "channels_last": infer["channels_last"],
                "flip": infer["flip"], "hr_stride": int(infer["hr_stride"])}

    loader = DataLoader(PyramidDataset(dataset, todo, infer["scales"]), batch_size=int(infer["batch_size"]),
                        num_workers=int(infer["num_workers"]), collate_fn=list)
    bar = tqdm(total=len(todo), desc=f"cams {args.split}", disable=rank != 0, dynamic_ncols=True, mininterval=1.0)
    with torch.inference_mode():
        for items in loader:
            for group in group_by_size(items):
                for it, maps in task.infer_group(group, **settings):
                    save_cam(out / f"{it['id']}.npz", it["keys"], **maps)
                bar.update(len(group))
    bar.close()
    done, skipped = all_reduce_sum([len(todo), len(mine) - len(todo)], device)
    barrier()
    if rank == 0:
        save_config(cfg | {"infer_cli": {"exp": str(args.exp), "split": args.split, "out": str(out)}},
                    out / "config.yaml")
        print(f"[infer_cam] {data['dataset']}/{args.split}: {int(done)} images inferred, {int(skipped)} skipped "
              f"(done before), scales {infer['scales']}, {world} process(es), {timer.seconds:.1f}s -> {out}")
    destroy()
    return 0


if __name__ == "__main__":
    run_main(main)
