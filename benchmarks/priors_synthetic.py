"""Vanilla CAM, P-OC and P-NOC side by side on the built-in synthetic benchmark: CAM mIoU and
object coverage, same backbone, same budget.

    nice -n 10 python benchmarks/priors_synthetic.py --data /work/data/synthetic \
        --work /tmp/priors_synthetic2 --out benchmarks/results/priors_synthetic.json

Protocol (every stage runs through the toolkit's own tools in subprocesses):

1. The ordinary classifier (OC): ``configs/synthetic/oc.yaml`` (vanilla CAM, label smoothing 0.1;
   no RandAugment on this benchmark, see that file) trained from scratch for ``--oc-epochs``.
   No ImageNet weights exist offline, so its backbone also stands in for the pre-trained
   backbone every CAM generator starts from (``model.weights``; the head is new), as ImageNet
   weights do in the reference.
2. ``cam``, ``puzzle``, ``poc`` and ``pnoc`` (``configs/synthetic/<method>.yaml``, all with label
   smoothing 0.1; P-OC/P-NOC with the Puzzle terms, as published) each train for ``--epochs``
   from that backbone; P-OC/P-NOC use the OC of step 1 (``method.oc_exp``). Puzzle-CAM, and
   ``poc-nopuzzle`` / ``pnoc-nopuzzle`` (``method.puzzle=false``), separate the effect of the
   Puzzle terms from that of erasing.
3. ``tools/infer_cam.py`` on ``--split`` (scales 0.5-2 + flips), then the threshold sweep of
   ``tools/evaluate.py --mode cam`` (same library functions) and the coverage numbers below.

Coverage: the synthetic objects are a large body shared by two classes plus a small
class-specific part (``wsss.data.synthetic``); the part masks are re-rendered from the generator
(checked against the ground-truth PNGs). ``fg_recall`` = ground-truth foreground pixels predicted
as any foreground class at the method's best threshold; ``part_recall`` / ``body_recall`` split
it into the part pixels and the rest of the objects. Results go to ``--out`` (JSON, written
atomically) with the command line; stage outputs in ``--work`` are reused unless ``--overwrite``.
"""

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsss.cli import run_main  # noqa: E402
from wsss.data import build_dataset  # noqa: E402
from wsss.data.io import atomic_path, find_cam, load_cam, write_json  # noqa: E402
from wsss.data.synthetic import render_sample, scene_options  # noqa: E402
from wsss.engine import load_checkpoint  # noqa: E402
from wsss.errors import DataError  # noqa: E402
from wsss.metrics import (DatasetGT, cam_to_labels, parse_thresholds, summarize_confusion,  # noqa: E402
                          sweep_confusions)

METHODS = ("cam", "puzzle", "poc", "pnoc", "poc-nopuzzle", "pnoc-nopuzzle")
# name -> (config, overrides). P-OC / P-NOC as published (with the Puzzle terms, whatever the
# synthetic config's default) and, as ablations, without them (OC-CSE's loss, and NOC on it).
VARIANTS = {"poc": ("poc", ["method.puzzle=true"]), "pnoc": ("pnoc", ["method.puzzle=true"]),
            "poc-nopuzzle": ("poc", ["method.puzzle=false"]), "pnoc-nopuzzle": ("pnoc", ["method.puzzle=false"])}
# Every compared method uses P-NOC's label smoothing, so that P-OC = Puzzle + erasing exactly.
COMMON = ["method.label_smoothing=0.1"]
DEFINITIONS = {
    "miou": "CAM mIoU (%) at the best background threshold of the sweep: background channel of constant t "
            "padded in front of the max-normalised CAMs, argmax; confusion summed over the split, mean over "
            "all classes incl. background (tools/evaluate.py --mode cam)",
    "threshold": "the background threshold t with the best mIoU",
    "fg_recall": "(%) pixels whose ground truth is any foreground class (1..C; 255 ignored) that are predicted as "
                 "any foreground class (max_c cam_c > t) at the best threshold, summed over the split",
    "fg_precision": "(%) pixels predicted as foreground at the best threshold whose ground truth is foreground",
    "part_recall": "(%) fg_recall restricted to the visible class-specific part pixels of the objects",
    "body_recall": "(%) fg_recall restricted to the other object pixels (the body shared within a class group)",
    "seconds": "wall-clock seconds of training (tools/train_cam.py, shared 2-core CPU: noisy)",
    "cpu_seconds": "CPU seconds (user + sys) of the training process and its data workers",
    "infer_seconds": "wall-clock seconds of tools/infer_cam.py on the split",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic", help="synthetic dataset root (tools/make_synthetic.py)")
    p.add_argument("--work", default="experiments/priors_synthetic", help="folder of the experiments")
    p.add_argument("--out", default="benchmarks/results/priors_synthetic.json")
    p.add_argument("--methods", default=",".join(METHODS), help=f"of {', '.join(METHODS)}")
    p.add_argument("--oc-epochs", type=int, default=4, help="epochs of the ordinary classifier")
    p.add_argument("--oc-override", dest="oc_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override of the OC only (repeatable)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of every compared method")
    p.add_argument("--split", default="val", help="split whose CAMs are scored")
    p.add_argument("--thresholds", default="0.05:0.80:0.05")
    p.add_argument("--threads", type=int, default=1, help="torch threads per stage (OMP_NUM_THREADS)")
    p.add_argument("--workers", type=int, default=1, help="data-loading workers per stage")
    p.add_argument("--overwrite", action="store_true", help="redo every stage")
    p.add_argument("overrides", nargs="*", help="extra config overrides for every stage (e.g. train.batch_size=16)")
    return p.parse_args(argv)


def run_stage(cmd, log_path, threads):
    """Run a tool; returns (wall seconds, CPU seconds of it and its children). Output -> log."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        tail = Path(log_path).read_text()[-2000:]
        raise RuntimeError(f"{shlex.join(map(str, cmd))} failed ({proc.returncode}); log {log_path}:\n{tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def train(config, exp, args, overrides):
    cmd = [sys.executable, "tools/train_cam.py", "--config", config, "--data", args.data, "--exp", exp,
           f"train.num_workers={args.workers}", *overrides] + (["--overwrite"] if args.overwrite else [])
    ckpt_path, timing = Path(exp) / "checkpoints" / "last.pth", Path(exp).with_suffix(".cpu.json")
    steps_before = int(load_checkpoint(ckpt_path)["step"]) if ckpt_path.is_file() and not args.overwrite else 0
    _, cpu = run_stage(cmd, Path(exp).with_suffix(".train.log"), args.threads)
    ckpt = load_checkpoint(ckpt_path)
    if int(ckpt["step"]) > steps_before:  # trained now (a reused run keeps its first measurement)
        write_json(timing, {"cpu_seconds": round(cpu, 1), "resumed_at_step": steps_before})
    cpu = json.loads(timing.read_text()) if timing.is_file() else {"cpu_seconds": None}
    return {"seconds": round(float(ckpt["train_seconds"]), 1), **cpu, "steps": int(ckpt["step"]),
            "epochs": int(ckpt["epoch"]), "final_metrics": ckpt.get("metrics"), "command": shlex.join(map(str, cmd))}


def infer(exp, args):
    out = Path(exp) / "cams" / args.split
    cmd = [sys.executable, "tools/infer_cam.py", "--exp", exp, "--split", args.split, "--out", out,
           f"infer.num_workers={args.workers}"] + (["--overwrite"] if args.overwrite else [])
    wall, _ = run_stage(cmd, Path(exp).with_suffix(".infer.log"), args.threads)
    return out, round(wall, 1)


def backbone_file(oc_exp, path):
    """The OC's backbone as a plain state dict (``model.weights`` of the compared methods)."""
    state = load_checkpoint(Path(oc_exp) / "checkpoints" / "last.pth")["state_dict"]
    backbone = {k[len("net.backbone."):]: v for k, v in state.items() if k.startswith("net.backbone.")}
    with atomic_path(path) as tmp:
        torch.save(backbone, tmp)
    return path


def ground_truth(dataset, meta, split):
    """Ground-truth masks and visible part pixels (re-rendered from the generator settings ``meta``,
    meta.json's ``config``; rendered masks must equal the PNGs)."""
    gt, gts, parts = DatasetGT(dataset), {}, {}
    for image_id in tqdm(dataset.ids, desc="part masks", mininterval=1.0):
        s = render_sample(meta["seed"], int(image_id.rsplit("_", 1)[1]), meta["size"], split, **scene_options(meta))
        gts[image_id] = gt.load(image_id)
        if not np.array_equal(s.mask, gts[image_id]):
            raise DataError("re-rendered mask differs from the ground truth", path=gt.path(image_id),
                            fix="regenerate the dataset with this version of tools/make_synthetic.py")
        parts[image_id] = s.parts
    return gts, parts


def score(cam_dir, dataset, gts, parts, thresholds):
    """mIoU sweep and coverage of a folder of CAM files (see DEFINITIONS)."""
    k = dataset.num_classes + 1
    names = ["background", *dataset.class_names]
    conf = None
    for image_id in tqdm(dataset.ids, desc=f"sweep {Path(cam_dir).name}", mininterval=1.0):
        c = sweep_confusions(gts[image_id], load_cam(find_cam(cam_dir, image_id)), thresholds, k)
        conf = c if conf is None else conf + c
    curve = [summarize_confusion(c, names)["miou"] for c in conf]
    best = int(np.argmax(curve))
    t = thresholds[best]
    fg_gt = conf[:, 1:, :].sum(axis=(1, 2))
    fg_hit = conf[:, 1:, 1:k].sum(axis=(1, 2))
    fg_pred = conf[:, :, 1:k].sum(axis=(1, 2))
    hits = np.zeros((k, 2, 2), np.int64)  # [class, part/body, (hit, total)]
    for image_id in dataset.ids:
        gt = gts[image_id]
        pred_fg = cam_to_labels(load_cam(find_cam(cam_dir, image_id)), t) > 0
        obj = (gt > 0) & (gt < k)  # object pixels (no 255 in this dataset, but never index with it)
        for r, region in enumerate((obj & parts[image_id], obj & ~parts[image_id])):
            np.add.at(hits[:, r, 0], gt[region & pred_fg], 1)
            np.add.at(hits[:, r, 1], gt[region], 1)
    hits[0] = hits[1:].sum(axis=0)  # row 0 (the unused background id): all object classes together
    pct = lambda a, b: round(100.0 * a / max(1, b), 2)  # noqa: E731
    at_best = summarize_confusion(conf[best], names)["per_class"]
    return {
        "miou": round(curve[best], 2), "threshold": t,
        "fg_recall": pct(fg_hit[best], fg_gt[best]), "fg_precision": pct(fg_hit[best], fg_pred[best]),
        "part_recall": pct(*hits[0, 0]), "body_recall": pct(*hits[0, 1]),
        "per_class": {name: {"iou": round(at_best[name]["iou"], 2), "part_recall": pct(*hits[c + 1, 0]),
                             "body_recall": pct(*hits[c + 1, 1])} for c, name in enumerate(dataset.class_names)},
        "curve": [{"threshold": th, "miou": round(m, 2), "fg_recall": pct(h, g)}
                  for th, m, h, g in zip(thresholds, curve, fg_hit, fg_gt)],
    }


def main(argv=None):
    args = parse_args(argv)
    command = shlex.join([Path(sys.executable).name, *sys.argv]) if argv is None else shlex.join(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    meta = json.loads((Path(args.data) / "meta.json").read_text())["config"]
    thresholds = parse_thresholds(args.thresholds)
    dataset = build_dataset("synthetic", args.data, args.split)

    oc_exp = work / "oc"
    oc = train("configs/synthetic/oc.yaml", oc_exp, args,
               [f"train.epochs={args.oc_epochs}", *args.overrides, *args.oc_overrides])
    weights = backbone_file(oc_exp, work / "oc_backbone.pth")
    gts, parts = ground_truth(dataset, meta, args.split)
    oc_cams, oc["infer_seconds"] = infer(oc_exp, args)
    oc.update(score(oc_cams, dataset, gts, parts, thresholds))

    results = {}
    for method in args.methods.split(","):
        base, extra = VARIANTS.get(method, (method, []))
        overrides = [f"train.epochs={args.epochs}", f"model.weights={weights}", *COMMON, *extra, *args.overrides]
        if base in ("poc", "pnoc"):
            overrides.append(f"method.oc_exp={oc_exp}")
        exp = work / method
        res = train(f"configs/synthetic/{base}.yaml", exp, args, overrides)
        cams, res["infer_seconds"] = infer(exp, args)
        res.update(score(cams, dataset, gts, parts, thresholds))
        results[method] = res
        print(f"[priors_synthetic] {method}: mIoU {res['miou']:.2f} at t={res['threshold']:.2f}, "
              f"fg recall {res['fg_recall']:.2f} (part {res['part_recall']:.2f}, body {res['body_recall']:.2f}), "
              f"{res['seconds']:.0f}s", flush=True)

    write_json(args.out, {
        "benchmark": "priors_synthetic", "command": command, "definitions": DEFINITIONS,
        "setup": {"data": meta, "split": args.split, "images": len(dataset), "backbone": "resnet18 width 32 (OS16)",
                  "oc_epochs": args.oc_epochs, "epochs": args.epochs, "thresholds": args.thresholds,
                  "threads": args.threads, "init": "every compared method starts from the OC's backbone "
                  "(model.weights), new head; P-OC/P-NOC use the OC itself as their ordinary classifier",
                  "common_overrides": COMMON, "oc_overrides": args.oc_overrides},
        "ordinary_classifier": oc, "results": results})
    summary = ", ".join(f"{m} {r['miou']:.1f}/{r['fg_recall']:.1f}" for m, r in results.items())
    print(f"[priors_synthetic] mIoU/fg-recall on {args.split}: {summary} -> {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
