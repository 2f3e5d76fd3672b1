"""Train AffinityNet (``model.affinity``: IRN's boundary head on a frozen backbone, or psa's) on affinity labels.

    python tools/train_affinity.py --config configs/voc/affinity.yaml --labels experiments/rw/aff_labels \
        --exp experiments/rw/affinitynet

Images of ``data.train_split`` with the label PNGs of ``--labels`` as masks, augmented by
``augment`` (random long-side resize, flip, crop; labels padded with 255); pairs within
``method.radius`` (IRN: 10 on the stride-4 grid, psa: 5 on the stride-8 grid); loss
(bg_pos/2 + fg_pos/2 + neg)/2 (``wsss.affinity.net``, ``wsss.affinity.psa``). Trains with the
shared engine: ``<exp>/config.yaml``, ``checkpoints/last.pth``, ``metrics.jsonl``; a rerun
resumes (``--overwrite`` starts over).
"""

import argparse
from pathlib import Path

from wsss.affinity import AFFINITY_TASKS
from wsss.cli import Timer, run_main, resolve_data
from wsss.config import load_config
from wsss.data import build_dataset
from wsss.data.transforms import build_train_transform
from wsss.engine import Trainer
from wsss.errors import ConfigError


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="configs/<dataset>/affinity.yaml")
    p.add_argument("--labels", required=True, help="affinity labels of tools/make_affinity_labels.py")
    p.add_argument("--exp", required=True, help="experiment folder (checkpoints, config, metrics)")
    p.add_argument("--data", default=None, help="dataset root (default: data.root of the config)")
    p.add_argument("--overwrite", action="store_true", help="train from scratch even if a checkpoint exists")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    cfg = load_config(args.config, args.overrides)
    data = resolve_data(cfg, args.data, args.config)
    if not Path(args.labels).is_dir():
        raise ConfigError("affinity label folder not found", path=args.labels,
                          fix="run tools/make_affinity_labels.py first")
    cfg.setdefault("method", {})["label_dir"] = str(args.labels)
    dataset = build_dataset(data["dataset"], data["root"], data.get("train_split", "train"),
                            transform=build_train_transform(cfg.get("augment")), mask_dir=args.labels)
    task = AFFINITY_TASKS.get((cfg.get("model") or {}).get("affinity", "irn"))(cfg)
    summary = Trainer(cfg, task, dataset, args.exp).fit(resume=not args.overwrite)
    print(f"[train_affinity] {len(dataset)} images, {summary['epochs']} epochs, {summary['steps']} steps, "
          f"loss {summary.get('loss', float('nan')):.4f} (bg {summary.get('bg_pos', float('nan')):.3f} "
          f"fg {summary.get('fg_pos', float('nan')):.3f} neg {summary.get('neg', float('nan')):.3f}), "
          f"{timer.seconds:.1f}s -> {args.exp}")
    return 0


if __name__ == "__main__":
    run_main(main)
