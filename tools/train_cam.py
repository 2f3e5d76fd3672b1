"""Train a CAM method (registry ``wsss.cams.METHODS``) with the toolkit's training engine.

    python tools/train_cam.py --method puzzle --config configs/voc/puzzle.yaml \
        --data data/VOC2012 --exp experiments/voc_puzzle train.batch_size=16 train.accumulate=2
    torchrun --nproc_per_node=4 tools/train_cam.py --config configs/voc/puzzle.yaml

A rerun resumes from ``<exp>/checkpoints/last.pth`` (a finished run is skipped) unless
``--overwrite``. The experiment folder gets ``config.yaml`` (the effective config),
``metrics.jsonl`` and the checkpoint.
"""

import argparse
from pathlib import Path

from wsss.cams import METHODS, build_method
from wsss.cli import Timer, run_main, resolve_data
from wsss.config import load_config
from wsss.engine import Trainer, is_main, seed_everything
from wsss.engine.distributed import destroy
from wsss.errors import ConfigError


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default=None, help=f"one of {', '.join(METHODS.names())} (default: method.name)")
    p.add_argument("--config", required=True, help="configs/<dataset>/<method>.yaml")
    p.add_argument("--data", default=None, help="dataset root (default: data.root of the config)")
    p.add_argument("--exp", default=None, help="experiment folder (default: experiments/<dataset>_<method>)")
    p.add_argument("--overwrite", action="store_true", help="train from scratch even if a checkpoint exists")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    return p.parse_args(argv)


def resolve_config(args):
    """The effective config: file <- overrides <- --method/--data, with the dataset resolved."""
    cfg = load_config(args.config, args.overrides)
    method = cfg.setdefault("method", {})
    name = args.method or method.get("name")
    if not name:
        raise ConfigError("no CAM method given", path=args.config, fix="pass --method or set method.name")
    METHODS.get(name)
    method["name"] = name
    data = resolve_data(cfg, args.data, args.config)
    data.setdefault("train_split", "train")
    return cfg


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    cfg = resolve_config(args)
    name, data = cfg["method"]["name"], cfg["data"]
    exp = Path(args.exp or cfg.get("exp") or f"experiments/{data['dataset']}_{name}")
    cfg["exp"] = str(exp)
    seed_everything(int((cfg.get("train") or {}).get("seed", 0)))
    method_cls = METHODS.get(name)
    dataset = method_cls.train_dataset(cfg, data["dataset"], data["root"], data["train_split"])
    task = build_method(name, cfg, dataset.num_classes)
    summary = Trainer(cfg, task, dataset, exp).fit(resume=not args.overwrite)
    if is_main():
        print(f"[train_cam] {name} on {data['dataset']}/{data['train_split']} ({len(dataset)} images): "
              f"{summary['epochs']} epochs, {summary['steps']} steps, {summary['seconds']:.1f}s training, "
              f"loss {summary.get('loss', float('nan')):.4f}, wall {timer.seconds:.1f}s -> {exp}")
    destroy()
    return 0


if __name__ == "__main__":
    run_main(main)
