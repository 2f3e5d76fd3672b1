"""Train an affinity network (registry ``wsss.affinity.AFFINITY_TASKS``; ``irn``: IRN's boundary
head on a frozen backbone, the default; ``psa``: psa's feature AffinityNet) on affinity labels.

    python tools/train_affinity.py --config configs/voc/affinity.yaml --labels experiments/rw/aff_labels \
        --exp experiments/rw/affinitynet

Images of ``data.train_split`` with the label PNGs of ``--labels`` (``method.label_dir``) as
masks, augmented by ``augment`` (random long-side resize, flip, crop; labels padded with 255);
``irn``: pairs within ``method.radius`` (10) on the stride-4 grid, loss (bg_pos/2 + fg_pos/2 +
neg)/2 (see ``wsss.affinity.net``); ``psa`` (``--method psa`` or ``method.name: psa``): pairs
within ``method.radius`` (5) on the stride-8 grid, the same loss (``wsss.affinity.psa``). Trains with the shared engine: ``<exp>/config.yaml``,
``checkpoints/last.pth``, ``metrics.jsonl``; a rerun resumes (``--overwrite`` starts over).
"""

from wsss.affinity import AFFINITY_TASKS
from wsss.cli import run_main
from wsss.engine import is_main
from wsss.engine.distributed import destroy
from wsss.stage import parse_train_args, train_parser, train_stage


def main(argv=None):
    parser = train_parser(__doc__, AFFINITY_TASKS, required=("config", "labels", "exp"))
    parser.add_argument("--labels", default=None, help="affinity labels of tools/make_affinity_labels.py")
    args = parse_train_args(parser, argv)

    def prepare(cfg):
        cfg["method"]["label_dir"] = str(args.labels)

    run = train_stage(args, AFFINITY_TASKS, "train_affinity", default_method="irn", prepare=prepare)
    if run is not None and is_main():
        print(run.line("train_affinity"))
    destroy()
    return 0


if __name__ == "__main__":
    run_main(main)
