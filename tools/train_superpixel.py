"""Train SP-CAM's pixel-superpixel association network (registry ``wsss.superpixel.SUPERPIXEL_TASKS``).

    python tools/train_superpixel.py --config configs/voc/superpixel.yaml \
        --exp experiments/voc_superpixel method.sal_dir=experiments/voc_poolnet/saliency/train_aug \
        method.cam_dir=experiments/voc_cam/cams/train_aug

``--method psam`` (the default): SpixelFCN's network, reconstruction loss on the binarised
saliency of ``method.sal_dir`` plus, over the last 30 % of the steps, the affinity terms from
the cell labels of the CAMs in ``method.cam_dir`` (docs/methods/spcam.md). The experiment is
what SP-CAM loads as ``method.superpixel_exp``. Writes ``<exp>/config.yaml``,
``checkpoints/last.pth`` and ``metrics.jsonl``; a rerun resumes (``--overwrite`` starts over).
"""

from wsss.cli import run_main
from wsss.engine import is_main
from wsss.engine.distributed import destroy
from wsss.stage import parse_train_args, train_parser, train_stage
from wsss.superpixel import SUPERPIXEL_TASKS


def main(argv=None):
    args = parse_train_args(train_parser(__doc__, SUPERPIXEL_TASKS, required=("config", "exp")), argv)
    run = train_stage(args, SUPERPIXEL_TASKS, "train_superpixel", default_method="psam")
    if run is not None and is_main():
        print(run.line("train_superpixel"))
    destroy()
    return 0


if __name__ == "__main__":
    run_main(main)
