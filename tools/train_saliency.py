"""Train a saliency network (C2AM-H or PoolNet; registry ``wsss.saliency.SALIENCY_TASKS``).

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

from wsss.cli import run_main
from wsss.engine import is_main
from wsss.engine.distributed import destroy
from wsss.errors import ConfigError
from wsss.saliency import SALIENCY_METHODS, SALIENCY_TASKS
from wsss.stage import parse_train_args, train_parser, train_stage


def main(argv=None):
    args = parse_train_args(train_parser(__doc__, SALIENCY_TASKS, required=("config", "exp")), argv)
    if args.method in SALIENCY_METHODS and args.method not in SALIENCY_TASKS:
        raise ConfigError(f"method {args.method!r} needs no training",
                          fix=f"run tools/infer_saliency.py --method {args.method} directly")
    run = train_stage(args, SALIENCY_TASKS, "train_saliency")
    if run is not None and is_main():
        print(run.line("train_saliency"))
    destroy()
    return 0


if __name__ == "__main__":
    run_main(main)
