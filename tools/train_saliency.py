"""Train a saliency network (C2AM-H or PoolNet) with the shared engine.

    python tools/train_saliency.py --method ccam --config configs/synthetic/ccam.yaml \
        --exp experiments/ccamh method.cam_dir=experiments/cam/cams/train
    python tools/train_saliency.py --method poolnet --config configs/synthetic/poolnet.yaml \
        --exp experiments/poolnet method.sal_dir=experiments/ccamh/saliency/train

``--method ccam`` learns C2AM's class-agnostic map from the contrastive losses plus the C2AM-H
hint loss on the CAMs of ``method.cam_dir`` (``method.hint_weight=0``: plain C2AM).
``--method poolnet`` learns PoolNet from the saliency PNGs of ``method.sal_dir`` (any folder of
``<id>.png`` 0..255 maps). Writes ``<exp>/config.yaml``, ``checkpoints/last.pth`` and
``metrics.jsonl``; a rerun resumes (``--overwrite`` trains from scratch).
"""

import argparse

from wsss.cli import Timer, run_main
from wsss.config import load_config, set_dotted
from wsss.data import build_dataset, detect_dataset
from wsss.engine import Trainer
from wsss.errors import ConfigError
from wsss.saliency import SALIENCY_METHODS


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", required=True, help=f"one of {', '.join(SALIENCY_METHODS.names())}")
    p.add_argument("--config", required=True, help="configs/<dataset>/<method>.yaml")
    p.add_argument("--exp", required=True, help="experiment folder (checkpoints, config, metrics)")
    p.add_argument("--data", default=None, help="dataset root (default: data.root of the config)")
    p.add_argument("--overwrite", action="store_true", help="train from scratch even if a checkpoint exists")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    return p.parse_args(argv)


def training_set(cfg, method):
    """The method's training dataset from ``cfg["data"]`` (``root``, ``name`` or ``dataset``, ``train_split``)."""
    data = cfg.get("data") or {}
    if not data.get("root"):
        raise ConfigError("data.root is not set", fix="pass --data <root> or data.root=<root>")
    name = data.get("name") or data.get("dataset") or "auto"
    name = detect_dataset(data["root"]) if name == "auto" else name
    base = build_dataset(name, data["root"], data.get("train_split", "train"))
    return method.train_dataset(cfg, base), base.num_classes


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    method = SALIENCY_METHODS.get(args.method)()
    if method.task is None:
        raise ConfigError(f"method {args.method!r} needs no training",
                          fix=f"run tools/infer_saliency.py --method {args.method} directly")
    cfg = load_config(args.config, args.overrides)
    set_dotted(cfg, "method.name", args.method)
    if args.data:
        set_dotted(cfg, "data.root", args.data)
    dataset, num_classes = training_set(cfg, method)
    task = method.task(cfg, num_classes)
    summary = Trainer(cfg, task, dataset, args.exp).fit(resume=not args.overwrite)
    print(f"train_saliency {args.method}: {len(dataset)} images, {summary['epochs']} epochs, {summary['steps']} steps, "
          f"loss {summary.get('loss', float('nan')):.4f}, {timer.seconds:.1f} s -> {args.exp}")
    return 0


if __name__ == "__main__":
    run_main(main)
