"""Predict index PNGs with a trained segmentation network: multi-scale + flip, mean logits, dCRF.

    python tools/infer_seg.py --exp experiments/seg --data data/voc --split val --crf deeplab
    torchrun --nproc_per_node=4 tools/infer_seg.py --exp experiments/seg --split val   # sharded

For every image: the mean of the logits over ``infer.scales`` x {identity, h-flip} at image
size (``wsss.segmentation.image_logits``; ``infer.resize``: ``pil_bicubic``, the default, makes
each scale's input with PIL's antialiased bicubic as P-NOC does, ``bilinear`` resizes the
normalised tensor), then

- ``<out>/raw/<id>.png``: argmax of the logits;
- with ``--crf PRESET`` also ``<out>/crf_<PRESET>/<id>.png``: argmax of the dense-CRF marginals
  of softmax(logits) (presets: ``wsss.postprocess.CRF_PRESETS``; ``deeplab`` = DeepLab's t 10,
  gaussian 1/3, bilateral 67/3/4); ``--crf config`` uses the config's ``infer.crf`` (a preset
  name or ``{preset: psa, t: 1}``).

``<out>`` defaults to ``<exp>/pred/<split>``. Images whose PNGs exist are skipped unless
``--overwrite``; ``infer_seg.yaml`` next to them holds the effective settings. Score with
``tools/evaluate.py --mode png --pred <out>/raw``.
"""

import argparse
import contextlib
import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from wsss.cli import Timer, run_main
from wsss.config import apply_overrides, save_config
from wsss.data import build_dataset, detect_dataset
from wsss.data.io import remove_stale_temporaries, save_index_png
from wsss.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ResizeLong
from wsss.engine import distributed as du
from wsss.engine.checkpoint import load_checkpoint
from wsss.engine.trainer import AMP_DTYPES
from wsss.errors import CheckpointError, ConfigError
from wsss.parallel import parallel_map
from wsss.postprocess import crf_from_probs, crf_params
from wsss.segmentation import image_logits
from wsss.segmentation.inference import INPUT_RESIZES
from wsss.stage import stage_task

INFER_DEFAULTS = {"scales": [0.5, 1.0, 1.5, 2.0], "flip": True, "align_corners": False, "flip_sum": False,
                  "resize": "pil_bicubic", "num_workers": 2}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", required=True, help="experiment folder of tools/train_seg.py")
    p.add_argument("--split", required=True, help="split to predict, e.g. val, test, train")
    p.add_argument("--data", default=None, help="dataset root (default: the training config's data.root)")
    p.add_argument("--checkpoint", default="auto",
                   help="best | last | auto (best if present, else last) | a checkpoint path")
    p.add_argument("--crf", default=None, metavar="PRESET",
                   help="also write dCRF-refined masks with this preset; 'config' = the config's infer.crf")
    p.add_argument("--scales", default=None, help="comma-separated scales (default: infer.scales)")
    p.add_argument("--no-flip", action="store_true", help="leave out the flipped views")
    p.add_argument("--out", default=None, help="output folder (default: <exp>/pred/<split>)")
    p.add_argument("--workers", type=int, default=1, help="processes for the CRF")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value (e.g. infer.flip_sum=true)")
    return p.parse_args(argv)


def checkpoint_path(exp, choice):
    ckpts = Path(exp) / "checkpoints"
    if choice == "auto":
        return ckpts / "best.pth" if (ckpts / "best.pth").is_file() else ckpts / "last.pth"
    if choice in ("best", "last"):
        path = ckpts / f"{choice}.pth"
        if not path.is_file():
            raise CheckpointError("checkpoint not found", path=path,
                                  fix="train first (tools/train_seg.py), or use --checkpoint auto|last")
        return path
    return Path(choice)


def training_config(ckpt, path, overrides):
    """The effective training config stored in a train_seg checkpoint, with overrides."""
    cfg = ckpt.get("config")
    if not isinstance(cfg, dict) or "model" not in cfg:
        raise CheckpointError("checkpoint holds no training config", path=path,
                              fix="use a checkpoint written by tools/train_seg.py")
    return apply_overrides(cfg, overrides)


def load_model(ckpt, path, cfg, num_classes, device):
    """The segmentation network of a train_seg checkpoint, in eval mode on ``device``."""
    return stage_task("segmentation", cfg).from_checkpoint(cfg, num_classes, ckpt, path=path).model.to(device).eval()


def _first(batch):
    return batch[0]


def _crf_write(state, item):
    """Worker: dCRF marginals of softmax(logits) -> argmax PNG."""
    params, out_dir = state
    image_id, image, probs = item
    q = crf_from_probs(image, probs, params)
    save_index_png(out_dir / f"{image_id}.png", q.argmax(0).astype(np.uint8))
    return image_id


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    rank, world = du.init_distributed()
    device = du.resolve_device(args.device)
    ckpt_path = checkpoint_path(args.exp, args.checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    cfg = training_config(ckpt, ckpt_path, args.overrides)
    epoch = ckpt.get("epoch")
    data = cfg.get("data") or {}
    root = args.data or data.get("root")
    if not root:
        raise ConfigError("no dataset root", fix="pass --data DIR")
    name = data.get("dataset", "auto")
    name = detect_dataset(root) if name in (None, "auto") else name
    dataset = build_dataset(name, root, args.split)
    model = load_model(ckpt, ckpt_path, cfg, dataset.num_classes, device)
    del ckpt
    infer = {**INFER_DEFAULTS, **(cfg.get("infer") or {})}
    if args.scales:
        infer["scales"] = [float(s) for s in args.scales.split(",")]
    if args.no_flip:
        infer["flip"] = False
    if infer["resize"] not in INPUT_RESIZES:
        raise ConfigError(f"infer.resize={infer['resize']!r}", fix=f"use one of {', '.join(INPUT_RESIZES)}")
    crf, crf_name = None, None
    if args.crf:
        spec = infer.get("crf") if args.crf == "config" else args.crf
        if not spec:
            raise ConfigError("--crf config needs infer.crf in the config", fix="pass a preset, e.g. --crf deeplab")
        spec = {"preset": spec} if isinstance(spec, str) else dict(spec)
        crf_name = spec["preset"] = spec.get("preset", "irn")
        try:
            crf = crf_params(**spec)  # fails fast on an unknown preset or field
        except TypeError as e:
            raise ConfigError(f"bad infer.crf {spec}: {e}", fix="use a preset name and CRFParams fields") from None
        infer["crf"] = spec
    aug = cfg.get("augment") or {}
    mean, std = ((aug.get("mean", IMAGENET_MEAN), aug.get("std", IMAGENET_STD)) if aug.get("normalize", True)
                 else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
    resize_long = ResizeLong(int(aug["eval_resize_long"])) if aug.get("eval_resize_long") else None

    out = Path(args.out or Path(args.exp) / "pred" / args.split)
    remove_stale_temporaries(out)  # what a killed run left mid-write
    raw_dir, crf_dir = out / "raw", (out / f"crf_{crf_name}" if crf else None)
    dirs = [d for d in (raw_dir, crf_dir) if d is not None]
    todo = [i for i in du.shard(range(len(dataset)), rank, world)
            if args.overwrite or not all((d / f"{dataset.ids[i]}.png").is_file() for d in dirs)]
    skipped = len(du.shard(range(len(dataset)), rank, world)) - len(todo)
    if du.is_main():
        save_config({**cfg, "infer": infer, "infer_seg": {
            "checkpoint": str(ckpt_path), "epoch": epoch, "split": args.split, "data": str(root), "dataset": name,
            "raw_dir": str(raw_dir), "crf_dir": str(crf_dir) if crf_dir else None,
            "crf_params": dataclasses.asdict(crf) if crf else None}}, out / "infer_seg.yaml")

    loader = DataLoader(Subset(dataset, todo), batch_size=1, collate_fn=_first,
                        num_workers=int(infer["num_workers"]) if todo else 0)

    amp = infer.get("amp", (cfg.get("train") or {}).get("amp", "none"))
    if amp not in AMP_DTYPES:
        raise ConfigError(f"infer.amp={amp!r}", fix=f"use one of {', '.join(AMP_DTYPES)}")
    autocast = (torch.autocast("cuda", dtype=AMP_DTYPES[amp]) if device.type == "cuda" and AMP_DTYPES[amp]
                else contextlib.nullcontext())

    def predictions():
        for sample in tqdm(loader, desc=f"infer_seg {args.split}", disable=not du.is_main(), dynamic_ncols=True):
            image = resize_long(sample)["image"] if resize_long else sample["image"]
            with autocast:  # the logits come back as float32
                logits = image_logits(model, image, infer["scales"], infer["flip"], infer["align_corners"],
                                      infer["flip_sum"], infer["resize"], mean, std, device)
            h, w = sample["image"].shape[:2]
            if tuple(logits.shape[-2:]) != (h, w):
                logits = F.interpolate(logits[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            save_index_png(raw_dir / f"{sample['id']}.png", logits.argmax(0).to(torch.uint8).cpu().numpy())
            if crf is not None:
                yield sample["id"], sample["image"], torch.softmax(logits, 0).cpu().numpy()
            else:
                yield sample["id"], None, None

    results = predictions() if crf is None else parallel_map(_crf_write, predictions(), workers=args.workers,
                                                             state=(crf, crf_dir))
    done = sum(1 for _ in results)
    du.barrier()
    where = ", ".join(str(d) for d in dirs)
    du.destroy()
    print(f"infer_seg: {done} images predicted, {skipped} skipped (existing) of split {args.split}"
          f"{f' (rank {rank}/{world})' if world > 1 else ''}, epoch {epoch} of {ckpt_path}, scales {infer['scales']}"
          f"{' + flip' if infer['flip'] else ''} -> {where} in {timer.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
