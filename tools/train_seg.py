"""Train a DeepLab segmentation network on pseudo masks, with model selection that needs no GT.

    python tools/train_seg.py --config configs/voc/deeplabv3plus.yaml --masks experiments/rw/masks \
        --exp experiments/seg [key=value ...]

The network trains on ``data.train_split`` with the index PNGs of ``--masks`` (another stage's
pseudo masks; ``--masks gt`` trains on the ground truth, the fully supervised upper bound).
After every epoch it is scored, and ``checkpoints/best.pth`` keeps the best epoch:

- ``--select-on pseudo`` (default): on a deterministic held-out part of the training split
  (``select.holdout``, default 5 %, removed from training) against its PSEUDO masks; no ground
  truth is used anywhere.
- ``--select-on gt``: on ``select.gt_split`` (default ``data.val_split``) against GROUND TRUTH.
  This is the optimistic protocol of several papers; it is written into ``selection.json``,
  ``metrics.jsonl``, ``report.md`` and the summary line.
- ``--select-on none``: no selection; use ``checkpoints/last.pth``.

Reruns resume from ``checkpoints/last.pth``; ``--overwrite`` trains from scratch.
"""

import argparse
from pathlib import Path

from wsss.cli import Timer, run_main, resolve_data
from wsss.config import load_config
from wsss.data import build_dataset
from wsss.data.io import write_text
from wsss.data.transforms import build_eval_transform, build_train_transform
from wsss.engine import TRAIN_DEFAULTS, Trainer, is_main, seed_everything
from wsss.engine.distributed import destroy
from wsss.errors import ConfigError
from wsss.segmentation.selection import SELECT_ON, ModelSelector, holdout_ids
from wsss.segmentation.task import SegmentationTask


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="configs/<dataset>/deeplab*.yaml")
    p.add_argument("--exp", default=None, help="experiment folder (default: experiments/<dataset>_<model.name>)")
    p.add_argument("--masks", required=True, help="pseudo-mask directory (<id>.png), or 'gt'")
    p.add_argument("--data", default=None, help="dataset root (overrides data.root)")
    p.add_argument("--select-on", choices=SELECT_ON, default="pseudo",
                   help="model selection: held-out pseudo masks (default), ground truth (explicit), none")
    p.add_argument("--overwrite", action="store_true", help="train from scratch even if checkpoints exist")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    return p.parse_args(argv)


def build_sets(cfg, masks, select_on):
    """(train dataset, selection dataset or None, description of the selection set)."""
    d, sel = cfg["data"], cfg.setdefault("select", {})
    name, root = d["dataset"], d["root"]
    mask_dir = None if masks == "gt" else masks
    train = build_dataset(name, root, d["train_split"], transform=build_train_transform(cfg.get("augment")),
                          mask_dir=mask_dir)
    if select_on == "none":
        return train, None, "none"
    if select_on == "gt":
        split = sel.get("gt_split") or d.get("val_split")
        if not split:
            raise ConfigError("--select-on gt needs select.gt_split or data.val_split", fix="e.g. select.gt_split=val")
        val = build_dataset(name, root, split)
        return train, val, f"GROUND TRUTH of split {split} ({len(val)} images, --select-on gt)"
    held = set(holdout_ids(train.ids, float(sel.get("holdout", 0.05))))
    val = build_dataset(name, root, d["train_split"], mask_dir=mask_dir)
    val.ids = [i for i in train.ids if i in held]
    train.ids = [i for i in train.ids if i not in held]
    source = "ground-truth masks, --masks gt" if masks == "gt" else "pseudo masks"
    return train, val, f"held-out {len(val)} of split {d['train_split']} ({source})"


def write_report(exp, args, summary, selector, describe):
    lines = [f"# Segmentation training: {exp.name}", "",
             f"- config: `{args.config}`; pseudo masks: `{args.masks}`",
             f"- trained {summary['epochs']} epochs, {summary['steps']} steps, {summary['seconds']:.0f} s"]
    if selector is None:
        lines.append("- model selection: none (use checkpoints/last.pth)")
    else:
        protocol = ("**ground truth** (optimistic protocol, chosen with --select-on gt)"
                    if args.select_on == "gt" else "pseudo masks only (no ground truth used)")
        scores = selector.scores
        lines += [f"- model selection on {describe}: {protocol}",
                  f"- best epoch {selector.state['best_epoch']}: mIoU {selector.state['best_miou']:.2f} "
                  f"(initial weights: {scores.get(0, float('nan')):.2f}) -> checkpoints/best.pth", "",
                  "| epoch | selection mIoU |", "| --- | --- |"]
        lines += [f"| {e} | {v:.2f} |" for e, v in sorted(scores.items())]
    write_text(exp / "report.md", "\n".join(lines) + "\n")


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    cfg = load_config(args.config, args.overrides)
    data = resolve_data(cfg, args.data, args.config)
    data.setdefault("train_split", "train")
    if args.masks != "gt" and not Path(args.masks).is_dir():
        raise ConfigError("pseudo-mask directory not found", path=args.masks,
                          fix="run runners/3-rw.sh first, or pass --masks gt for the supervised upper bound")
    exp = Path(args.exp or f"experiments/{data['dataset']}_{(cfg.get('model') or {}).get('name', 'deeplab')}")
    train, val, describe = build_sets(cfg, args.masks, args.select_on)
    cfg["select"].update(on=args.select_on, set=describe, masks=str(args.masks))

    seed_everything(int((cfg.get("train") or {}).get("seed", TRAIN_DEFAULTS["seed"])))  # the head's init
    task = SegmentationTask(cfg, train.num_classes)
    trainer = Trainer(cfg, task, train, exp)
    selector = None
    if val is not None:
        sel = cfg["select"]
        selector = ModelSelector(exp, val, build_eval_transform(cfg.get("augment")), args.select_on,
                                 train.class_names, trainer.device, cfg=trainer.cfg,
                                 scales=sel.get("scales", [1.0]), flip=sel.get("flip", False), describe=describe)
        if args.overwrite:
            selector.reset()
        task.validator = selector
    summary = trainer.fit(resume=not args.overwrite)
    if selector is not None:
        selector(task, trainer.epoch, trainer.step)  # the last epoch (on_epoch_start scored the others)
    if is_main():
        write_report(exp, args, summary, selector, describe)
    if selector is None:
        best = f"no selection -> {exp / 'checkpoints' / 'last.pth'}"
    else:
        st = selector.state
        best = (f"model selection on {describe}: best epoch {st['best_epoch']} mIoU {st['best_miou']:.2f} "
                f"(start {selector.scores.get(0, float('nan')):.2f}) -> {selector.best_path}")
    if is_main():
        print(f"train_seg: {summary['epochs']} epochs on {len(train)} images, {best} in {timer.seconds:.0f} s")
    destroy()
    return 0


if __name__ == "__main__":
    run_main(main)
