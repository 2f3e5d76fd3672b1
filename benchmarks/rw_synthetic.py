"""Random-walk stage on the built-in synthetic benchmark: pseudo masks against the CAMs they start from,
with IRN's AffinityNet and with psa's.

    python benchmarks/rw_synthetic.py --data data/synthetic --work experiments/demo \
        --out benchmarks/results/rw_synthetic.json

Protocol: ``runners/3-rw.sh`` with ``EXP_ROOT=--work`` (stage 1's P-NOC CAMs in
``<work>/synthetic_pnoc``; affinity labels from stage 2's C2AM-H activations as in
``runners/demo.sh``, or ``--saliency poolnet``; finished work is reused, e.g. a demo folder)
makes affinity labels, trains AffinityNet, walks the CAMs of the training split, picks the
background threshold from a sweep of the walked scores (``infer.bg_threshold: best``) and writes
the pseudo masks with P-NOC's label CRF. Scored with ``tools/evaluate.py``: the CAMs and the
walked scores at their best thresholds (``--mode cam``), the pseudo masks as they are. Control:
the CAMs at their best threshold through the same label CRF (``tools/make_pseudo_masks.py``),
which separates the walk's share from the CRF's. With ``--gt-upper-bound`` the same AffinityNet
is also trained on the ground-truth masks as affinity labels (an oracle: not a weakly
supervised result) and walks the same CAMs.

psa's AffinityNet (unless ``--no-psa``): ``AFFINITY=psa runners/3-rw.sh`` on the
same affinity labels (``LABELS``) and the same CAMs: psa's network (configs/synthetic/affinity_psa.yaml)
and psa's walk (background ``(1 - max)^alpha`` walked with the classes, argmax); its walked scores
at their best threshold, and, like for like with IRN's row, the pseudo masks at that threshold
through the same label CRF; ``--psa-logt`` adds walks of the same network at other logt.
Everything goes into ``--out`` (JSON, atomic).
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.stage_run import run_record, sh  # noqa: E402
from wsss.cli import run_main  # noqa: E402
from wsss.data.io import write_json  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic", help="synthetic dataset root")
    p.add_argument("--work", default="experiments", help="experiments folder of runners 1-3 (EXP_ROOT)")
    p.add_argument("--split", default="train", help="training split (the pseudo masks' split)")
    p.add_argument("--saliency", default="ccamh", choices=["ccamh", "poolnet"],
                   help="affinity-label saliency: C2AM-H activations (the demo's) or PoolNet maps")
    p.add_argument("--gt-upper-bound", action="store_true", help="also train AffinityNet on ground-truth labels")
    p.add_argument("--no-psa", action="store_true", help="IRN's AffinityNet only")
    p.add_argument("--psa-logt", type=int, nargs="*", default=[], help="extra logt values for psa's walk")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/rw_synthetic.json"))
    return p.parse_args(argv)


def score(path):
    r = json.loads(Path(path).read_text())
    return {"miou": round(r["miou"], 2), "threshold": r.get("threshold")}


def psa_results(args, work, data, env, cams, crf):
    """psa's network on IRN's labels: runner 3 (psa's walk -> masks), then its walked scores swept,
    the masks at the swept threshold through the label CRF, and walks at other logt."""
    py, rw, split = sys.executable, work / "synthetic_rw_psa", args.split
    sh(["bash", "runners/3-rw.sh"], env={**env, "AFFINITY": "psa", "LABELS": str(work / "synthetic_rw" / "aff_labels")})
    infer = yaml.safe_load((rw / "pseudo" / split / "config.yaml").read_text())["infer"]  # with the preset
    out = {f"psa: pseudo masks (psa's walk: logt {infer['logt']}, background (1 - max)^{infer['bg_alpha']}, argmax)":
           score(rw / f"eval_rw_{split}.json")}
    for logt in [None, *args.psa_logt]:
        tag = "" if logt is None else f"_logt{logt}"
        over = [] if logt is None else [f"infer.logt={logt}"]
        scores = rw / f"rw{tag}" / split
        sh([py, "tools/infer_rw.py", "--exp", rw, "--split", split, "--data", data, "--cams", cams, "--save-rw",
            scores, "--scores-only", *over])
        sh([py, "tools/evaluate.py", "--data", data, "--split", split, "--pred", scores, "--mode", "cam",
            "--no-contour", "--out", rw / f"eval_rwscores{tag}_{split}.json"])
        walked = score(rw / f"eval_rwscores{tag}_{split}.json")
        label = "psa: walked scores (best threshold, no CRF)" + ("" if logt is None else f", logt {logt}")
        out[label] = walked
        if logt is None:
            masks = rw / "pseudo_threshold_crf" / split
            sh([py, "tools/make_pseudo_masks.py", "--data", data, "--split", split, "--scores", scores, "--out", masks,
                "--threshold", str(walked["threshold"]), "--crf", crf, "--workers", "2"])
            sh([py, "tools/evaluate.py", "--data", data, "--split", split, "--pred", masks, "--mode", "png",
                "--no-contour", "--out", rw / f"eval_rw_threshold_crf_{split}.json"])
            out["psa: pseudo masks (walked scores at that threshold + the same label CRF)"] = score(
                rw / f"eval_rw_threshold_crf_{split}.json")
    return out


def main(argv=None):
    args = parse_args(argv)
    work, data = Path(args.work), Path(args.data)
    py = sys.executable
    sal = {"ccamh": work / "synthetic_ccamh" / "activation" / args.split,
           "poolnet": work / "synthetic_poolnet" / "saliency" / args.split}[args.saliency]
    env = {**os.environ, "DATASET": "synthetic", "DATA_ROOT": str(data), "EXP_ROOT": str(work),
           "EVAL_SPLITS": args.split, "SALIENCY": str(sal)}
    start = time.perf_counter()
    sh(["bash", "runners/3-rw.sh"], env=env)
    wall = time.perf_counter() - start
    rw, cams = work / "synthetic_rw", work / "synthetic_pnoc" / "cams" / args.split
    crf = yaml.safe_load((rw / "config.yaml").read_text())["infer"]["crf"]["preset"]  # the run's effective one
    results = {"CAMs (P-NOC, best threshold)": score(rw / f"eval_cam_{args.split}.json"),
               "walked scores (best threshold, no CRF)": score(rw / f"eval_rwscores_{args.split}.json"),
               "pseudo masks (random walk + label CRF)": score(rw / f"eval_rw_{args.split}.json")}
    control = rw / "control_cams_crf"
    sh([py, "tools/make_pseudo_masks.py", "--data", data, "--split", args.split, "--scores", cams, "--out",
        control, "--threshold", str(results["CAMs (P-NOC, best threshold)"]["threshold"]), "--crf", crf,
        "--workers", "2"])
    sh([py, "tools/evaluate.py", "--data", data, "--split", args.split, "--pred", control, "--mode", "png",
        "--no-contour", "--out", rw / f"eval_control_{args.split}.json"])
    results["control: CAMs (best threshold) + the same label CRF, no walk"] = score(
        rw / f"eval_control_{args.split}.json")
    if not args.no_psa:
        start = time.perf_counter()
        results.update(psa_results(args, work, data, env, cams, crf))
        wall_psa = time.perf_counter() - start
    if args.gt_upper_bound:
        gt = work / "synthetic_rw_gt_labels"
        init = [f"model.backbone_init={work / 'synthetic_pnoc/checkpoints/last.pth'}",
                "model.backbone_init_prefix=net.backbone."]
        sh([py, "tools/train_affinity.py", "--config", "configs/synthetic/affinity.yaml", "--data", data,
            "--labels", data / "SegmentationClass", "--exp", gt, f"data.train_split={args.split}", *init])
        sh([py, "tools/infer_rw.py", "--exp", gt, "--split", args.split, "--data", data, "--cams", cams,
            "--save-rw", gt / "rw" / args.split, "--scores-only"])
        sh([py, "tools/evaluate.py", "--data", data, "--split", args.split, "--pred", gt / "rw" / args.split,
            "--mode", "cam", "--no-contour", "--out", gt / f"eval_rwscores_{args.split}.json"])
        results["oracle: walked scores, AffinityNet on ground-truth labels"] = score(
            gt / f"eval_rwscores_{args.split}.json")
    out = {
        "benchmark": "rw_synthetic",
        "split": args.split,
        "metric": "mIoU (%) of the split's ground truth, background included; CAMs at their best threshold",
        "results": results,
        "rw_beats_cams": results["pseudo masks (random walk + label CRF)"]["miou"]
        > results["CAMs (P-NOC, best threshold)"]["miou"],
        "rw_beats_cams_with_the_same_crf": results["pseudo masks (random walk + label CRF)"]["miou"]
        > results["control: CAMs (best threshold) + the same label CRF, no walk"]["miou"],
        "runner_wall_seconds_this_call": round(wall, 1),
        "config": "configs/synthetic/affinity.yaml",
        "saliency": f"affinity labels from {sal}",
        **run_record(),
    }
    if not args.no_psa:
        out.update(psa_config="configs/synthetic/affinity_psa.yaml", psa_wall_seconds_this_call=round(wall_psa, 1))
    write_json(args.out, out)
    for k, v in results.items():
        print(f"{k:<78s} mIoU {v['miou']:6.2f}")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
