"""Train a CAM method (registry ``wsss.cams.METHODS``) with the toolkit's training engine.

    python tools/train_cam.py --method puzzle --config configs/voc/puzzle.yaml \
        --data data/VOC2012 --exp experiments/voc_puzzle train.batch_size=16 train.accumulate=2
    torchrun --nproc_per_node=4 tools/train_cam.py --config configs/voc/puzzle.yaml
    python tools/train_cam.py --method pnoc --list-options     # the method.* keys and defaults

A rerun resumes from ``<exp>/checkpoints/last.pth`` (a finished run is skipped) unless
``--overwrite``. The experiment folder gets ``config.yaml`` (the effective config, every
method option included), ``metrics.jsonl`` and the checkpoint. The training batches carry
image labels only (no pixel ground truth).
"""

from wsss.cams import METHODS
from wsss.cli import run_main
from wsss.engine import is_main
from wsss.engine.distributed import destroy
from wsss.stage import parse_train_args, train_parser, train_stage


def main(argv=None):
    parser = train_parser(__doc__, METHODS, exp_default=" (default: the config's exp, else experiments/<dataset>_<method>)")
    run = train_stage(parse_train_args(parser, argv), METHODS, "train_cam")
    if run is not None and is_main():
        print(run.line("train_cam"))
    destroy()
    return 0


if __name__ == "__main__":
    run_main(main)
