"""Affinity labels for AffinityNet from CAMs (+ saliency) and dense CRF, over a process pool.

    python tools/make_affinity_labels.py --config configs/voc/affinity.yaml --split train_aug \
        --cams experiments/pnoc/cams/train_aug --saliency experiments/poolnet/saliency/train_aug \
        --out experiments/rw/aff_labels --workers 16

With ``--saliency`` the rule is ``method.labels`` (P-NOC: saliency > 0.10 decides the
background, CAMs with background at 0.40 the classes); without it ``method.labels_fallback``
(psa's dual alpha, low 4 / high 32). See ``wsss.affinity.labels`` for every rule. Writes
``<out>/<id>.png`` (uint8 VOC-palette index PNG: 0 background, c+1 class c, 255 unsure)
atomically, skips finished images unless ``--overwrite``, and saves the effective config as
``<out>/config.yaml``.
"""

import argparse
from pathlib import Path

from tqdm import tqdm

from wsss.affinity.labels import label_file_job, rule_params
from wsss.cli import Timer, run_main, resolve_data
from wsss.config import load_config, save_config
from wsss.data import build_dataset
from wsss.data.io import remove_stale_temporaries
from wsss.errors import ConfigError
from wsss.parallel import parallel_map


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="configs/<dataset>/affinity.yaml")
    p.add_argument("--cams", required=True, help="folder of <id>.npz CAM files (tools/infer_cam.py)")
    p.add_argument("--out", required=True, help="output folder of the label PNGs")
    p.add_argument("--saliency", default=None, help="folder of <id>.png saliency maps (optional)")
    p.add_argument("--split", default=None, help="split (default: data.train_split)")
    p.add_argument("--data", default=None, help="dataset root (default: data.root of the config)")
    p.add_argument("--workers", type=int, default=1, help="CRF processes (default 1)")
    p.add_argument("--overwrite", action="store_true", help="recompute existing label files")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    return p.parse_args(argv)


def resolve(args):
    cfg = load_config(args.config, args.overrides)
    data = resolve_data(cfg, args.data, args.config)
    split = args.split or data.get("train_split", "train")
    method = cfg.get("method") or {}
    key = "labels" if args.saliency else "labels_fallback"
    if key not in method:
        raise ConfigError(f"method.{key} is not set", path=args.config,
                          fix="add the affinity-label rule (see configs/voc/affinity.yaml)")
    rule, params = rule_params(method[key])
    if rule == "saliency" and not args.saliency:
        raise ConfigError("method.labels_fallback uses the saliency rule but no --saliency was given",
                          fix="pass --saliency DIR or choose rule threshold|alpha")
    return cfg, split, rule, params


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    cfg, split, rule, params = resolve(args)
    for folder, what in ((args.cams, "CAM folder"), (args.saliency, "saliency folder")):
        if folder and not Path(folder).is_dir():
            raise ConfigError(f"{what} not found", path=folder, fix="run the stage that writes it first")
    dataset = build_dataset(cfg["data"]["dataset"], cfg["data"]["root"], split)
    out = Path(args.out)
    remove_stale_temporaries(out)  # what a killed run left mid-write
    state = {"dataset": dataset, "cam_dir": args.cams, "sal_dir": args.saliency, "out_dir": out,
             "rule": rule, "params": params, "overwrite": args.overwrite}
    done, counts = 0, [0, 0, 0]
    jobs = parallel_map(label_file_job, range(len(dataset)), workers=args.workers, state=state)
    for _, c in tqdm(jobs, total=len(dataset), desc=f"affinity labels {split}", dynamic_ncols=True, mininterval=1.0):
        if c is not None:
            done += 1
            counts = [a + b for a, b in zip(counts, c)]
    save_config(cfg | {"labels_cli": {"split": split, "cams": str(args.cams), "saliency": args.saliency,
                                      "rule": rule, "params": params, "out": str(out)}}, out / "config.yaml")
    total = max(sum(counts), 1)
    print(f"[make_affinity_labels] {split}: {done} written, {len(dataset) - done} skipped (done before), rule {rule}; "
          f"bg {100 * counts[0] / total:.1f}% fg {100 * counts[1] / total:.1f}% ignore {100 * counts[2] / total:.1f}%, "
          f"{args.workers} worker(s), {timer.seconds:.1f}s -> {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
