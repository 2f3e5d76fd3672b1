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

from pathlib import Path

from wsss.cli import run_main
from wsss.data.io import write_text
from wsss.engine import is_main
from wsss.engine.distributed import destroy
from wsss.errors import ConfigError
from wsss.segmentation import SEG_TASKS
from wsss.segmentation.selection import SELECT_ON
from wsss.stage import parse_train_args, train_parser, train_stage


def parse_args(argv=None):
    p = train_parser(__doc__, SEG_TASKS, exp_default=" (default: experiments/<dataset>_<model.name>)",
                     required=("config", "masks"))
    p.add_argument("--masks", default=None, help="pseudo-mask directory (<id>.png), or 'gt'")
    p.add_argument("--select-on", choices=SELECT_ON, default="pseudo",
                   help="model selection: held-out pseudo masks (default), ground truth (explicit), none")
    return parse_train_args(p, argv)


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
    if not args.list_options and args.masks != "gt" and not Path(args.masks).is_dir():
        raise ConfigError("pseudo-mask directory not found", path=args.masks,
                          fix="run runners/3-rw.sh first, or pass --masks gt for the supervised upper bound")

    def prepare(cfg):
        cfg.setdefault("select", {}).update(on=args.select_on, masks=str(args.masks))

    run = train_stage(args, SEG_TASKS, "train_seg", default_method="deeplab", prepare=prepare,
                      default_exp=lambda cfg: f"experiments/{cfg['data']['dataset']}_"
                                              f"{(cfg.get('model') or {}).get('name', 'deeplab')}")
    if run is None:
        return 0
    selector, describe = run.task.selector, run.cfg["select"]["set"]
    if is_main():
        write_report(run.exp, args, run.summary, selector, describe)
        if selector is None:
            best = f"no selection -> {run.exp / 'checkpoints' / 'last.pth'}"
        else:
            st = selector.state
            best = (f"model selection on {describe}: best epoch {st['best_epoch']} mIoU {st['best_miou']:.2f} "
                    f"(start {selector.scores.get(0, float('nan')):.2f}) -> {selector.best_path}")
        print(f"{run.line('train_seg')}; {best}")
    destroy()
    return 0


if __name__ == "__main__":
    run_main(main)
