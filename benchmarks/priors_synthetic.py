"""Vanilla CAM, P-OC, P-NOC, ICAM, CPN and AEFT-GPP side by side on the built-in synthetic
benchmark: CAM mIoU, object coverage and contour F, same backbone, same budget.

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
   Puzzle terms from that of erasing. ``cpn`` (``configs/synthetic/cpn.yaml``) runs the same way;
   ``cpn-reference`` with the reference's quirks, ``cpn-grid`` with grid pairs. ``aeft``
   (AEFT-GPP, ``configs/synthetic/aeft.yaml``) switches from classification alone to its erasing
   triplet at T = 18/40 of the run (the reference's epoch 18 of 40), scaled to ``--epochs`` (2
   epochs: T = 1); ``aeft-notriplet`` (the same schedule, triplet weights 0) and ``aeft-gap``
   (AEFT's head with GAP instead of GPP, no triplet) separate the effect of GPP from that of the
   triplet.
3. ``tools/infer_cam.py`` on ``--split`` (scales 0.5-2 + flips; each method's own inference, e.g.
   AEFT's ReLU after upsampling), then the threshold sweep of ``tools/evaluate.py --mode cam``
   (same library functions), the coverage numbers below and the contour F-score (ICAM's
   definition) at the best threshold.
4. ``icam`` (``configs/synthetic/icam.yaml``, ICAM's own recipe: no label smoothing) from the same
   backbone for the same epochs and batch. Its CAM files store a background map (1 - the sum of
   its classes): every number is given for both protocols, the toolkit's sweep of the foreground
   channels (``miou``, ``threshold``, ...) and ICAM's own, against the stored background, i.e. a
   fixed threshold of 0.5 on its arg-max-only maps (``stored_background``: ``miou``,
   ``fg_recall``, ``contour_f``, ...). Ablations: ``icam-nofs`` (no feature-similarity loss),
   ``icam-gap`` (no importance sampling: the GAP term alone), ``cam-os8`` (vanilla CAM at ICAM's
   output stride 8).

``spcam`` (SP-CAM, docs/methods/spcam.md) first builds its inputs in ``<work>/spcam_prep``, none
of them from ground truth: the ``cam`` row's experiment (trained here when missing, with the same
command) is the first CAM; its CAMs of the training split are the hints of C2AM-H
(``configs/synthetic/ccam.yaml``, from that CAM's backbone), whose activation maps of the
training split (0..255, no threshold) are the saliency; the association network
(``configs/synthetic/superpixel.yaml``, ``--superpixel-epochs``) learns from that saliency and
those CAMs. SP-CAM itself then trains for ``--epochs`` from the OC's backbone like every row.
Its row reports the sweep (``miou``, as the other rows, at ``walk_steps`` 20), its own GT-free
protocol (``stored_background``: the constant background 0.3 stored in its CAM files, no
threshold chosen on ground truth), ``saliency_selected`` (th chosen without ground truth, as the
best agreement of the training split's SP-CAM foreground with its saliency) and, in
``walk_grid``, the sweep's best for each number of walk steps r in {0, 20, 30, 40} (the
reference's ground-truth-tuned choice of (r, th)).

Coverage: the synthetic objects are a large body shared by two classes plus a small
class-specific part (``wsss.data.synthetic``); the part masks are re-rendered from the generator
(checked against the ground-truth PNGs). ``fg_recall`` = ground-truth foreground pixels predicted
as any foreground class at the method's best threshold; ``part_recall`` / ``body_recall`` split
it into the part pixels and the rest of the objects; ``contour_f`` is ICAM's contour F-score
(tools/evaluate.py) of the label maps at the best threshold. A method whose config names its own
sweep (``infer.thresholds``, e.g. CPN's 0.20-0.59 on its halved maps) is also scored with it
(``method_protocol``). Results go to ``--out`` (JSON, written
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
from wsss.data.maps import load_gray_map  # noqa: E402
from wsss.data.synthetic import render_sample, scene_options  # noqa: E402
from wsss.engine import load_checkpoint  # noqa: E402
from wsss.errors import DataError  # noqa: E402
from wsss.config import load_config  # noqa: E402
from wsss.metrics import (DatasetGT, cam_to_labels, confusion_matrix, contour_counts,  # noqa: E402
                          parse_thresholds, summarize_confusion, summarize_contour, sweep_confusions)

METHODS = ("cam", "puzzle", "poc", "pnoc", "poc-nopuzzle", "pnoc-nopuzzle", "icam", "icam-nofs", "icam-gap",
           "cam-os8", "cpn", "cpn-reference", "cpn-grid", "aeft", "aeft-notriplet", "aeft-gap", "spcam")
# name -> (config, overrides). P-OC / P-NOC as published (with the Puzzle terms, whatever the
# synthetic config's default) and, as ablations, without them (OC-CSE's loss, and NOC on it).
VARIANTS = {"poc": ("poc", ["method.puzzle=true"]), "pnoc": ("pnoc", ["method.puzzle=true"]),
            "poc-nopuzzle": ("poc", ["method.puzzle=false"]), "pnoc-nopuzzle": ("pnoc", ["method.puzzle=false"]),
            "icam": ("icam", ["method.label_smoothing=0.0"]),
            # ablations of ICAM: without the feature-similarity loss, without importance sampling
            # (the GAP term alone, the reference's --loss_weight 0), and vanilla CAM on ICAM's grid
            "icam-nofs": ("icam", ["method.label_smoothing=0.0", "method.fs_weight=0.0"]),
            "icam-gap": ("icam", ["method.label_smoothing=0.0", "method.loss_weight=0.0"]),
            "cam-os8": ("cam", ["model.output_stride=8"]),
            # CPN with the reference's quirks (~39 % hidden, SLIC on the normalised crop, the PRCM key
            # .view), and with the grid strategy instead of superpixels
            "cpn-reference": ("cpn", ["method.hide_draw=reference", "method.slic_on=normalized",
                                      "method.key_layout=reference"]),
            "cpn-grid": ("cpn", ["method.strategy=grid"]),
            # AEFT's ablations: the GPP classifier without the triplet; its head with GAP instead of GPP
            "aeft-notriplet": ("aeft", ["method.attract_weight=0", "method.repel_weight=0"]),
            "aeft-gap": ("aeft", ["method.gpp=false", "method.attract_weight=0", "method.repel_weight=0"])}
# Every compared method uses P-NOC's label smoothing, so that P-OC = Puzzle + erasing exactly
# (ICAM, a recipe of its own, overrides it back to 0 in VARIANTS).
COMMON = ["method.label_smoothing=0.1"]
# Overrides that scale with the epoch budget: AEFT's switch at epoch 18 of 40.
SCHEDULES = {"aeft": lambda epochs: [f"method.switch_epoch={max(1, round(epochs * 18 / 40))}"]}
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
    "contour_f": "ICAM's contour F-score (%, mean over foreground classes, tolerance 0.008 x the image diagonal; "
                 "tools/evaluate.py) of the label maps at the best threshold",
    "stored_background": "CAM files that store their method's background map (ICAM: 1 - sum of the classes): "
                         "the same numbers for the label maps scored against it (ICAM's protocol, no threshold)",
    "method_protocol": "the same scores under the method's own threshold sweep (its config's infer.thresholds), "
                       "when it has one",
    "seconds": "wall-clock seconds of training (tools/train_cam.py, shared 2-core CPU: noisy)",
    "cpu_seconds": "CPU seconds (user + sys) of the training process and its data workers",
    "infer_seconds": "wall-clock seconds of tools/infer_cam.py on the split",
    "contour_f": "(spcam) contour F-score (%) at the best threshold (tools/evaluate.py's ICAM definition)",
    "stored_background": "(spcam) mIoU, fg recall / precision and contour F for the method's stored constant "
                         "background (no sweep, no ground truth in the choice)",
    "walk_grid": "(spcam) per number of superpixel-walk steps r: the sweep's best mIoU and threshold",
    "saliency_selected": "(spcam) mIoU etc. at the threshold whose foreground best agrees (IoU) with the training "
                         "split's saliency (> 0.5) on the training split's SP-CAMs: a choice without ground truth",
    "prep": "(spcam) the inputs made before training it: first CAM, C2AM-H saliency, association network",
}
#: SP-CAM's walk steps scored in ``walk_grid`` (the reference's grid); the first is the default
WALK_GRID = (20, 0, 30, 40)


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
    p.add_argument("--superpixel-epochs", type=int, default=10, help="epochs of SP-CAM's association network")
    p.add_argument("--saliency-epochs", type=int, default=3, help="epochs of C2AM-H (SP-CAM's saliency)")
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


def train(config, exp, args, overrides, tool="tools/train_cam.py"):
    cmd = [sys.executable, tool, "--config", config, "--data", args.data, "--exp", exp,
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


def infer(exp, args, split=None, out=None, overrides=(), log=None):
    split = split or args.split
    out = out or Path(exp) / "cams" / split
    cmd = [sys.executable, "tools/infer_cam.py", "--exp", exp, "--split", split, "--out", out,
           f"infer.num_workers={args.workers}", *overrides] + (["--overwrite"] if args.overwrite else [])
    wall, _ = run_stage(cmd, log or Path(exp).with_suffix(".infer.log"), args.threads)
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


def load_fg(cam_dir, image_id):
    """A CAM file without its stored background map (the sweep protocol)."""
    cam = load_cam(find_cam(cam_dir, image_id))
    return {k: v for k, v in cam.items() if k not in ("cam_bg", "hr_cam_bg")}


def coverage(cam_dir, dataset, gts, parts, labels_of):
    """Part / body recall (overall and per class) and contour counts of the label maps
    ``labels_of(cam_dir, image_id)``."""
    k = dataset.num_classes + 1
    hits = np.zeros((k, 2, 2), np.int64)  # [class, part/body, (hit, total)]
    contour = 0
    for image_id in dataset.ids:
        gt = gts[image_id]
        labels = labels_of(cam_dir, image_id)
        pred_fg = labels > 0
        obj = (gt > 0) & (gt < k)  # object pixels (no 255 in this dataset, but never index with it)
        for r, region in enumerate((obj & parts[image_id], obj & ~parts[image_id])):
            np.add.at(hits[:, r, 0], gt[region & pred_fg], 1)
            np.add.at(hits[:, r, 1], gt[region], 1)
        contour = contour + contour_counts(gt, labels, k, "icam")
    hits[0] = hits[1:].sum(axis=0)  # row 0 (the unused background id): all object classes together
    return hits, summarize_contour(contour, dataset.class_names, "icam")


def pct(a, b):
    return round(100.0 * a / max(1, b), 2)


def region_scores(conf, hits, contour, dataset):
    """mIoU, foreground recall / precision, part / body recall and contour F of one protocol."""
    k = dataset.num_classes + 1
    names = ["background", *dataset.class_names]
    summary = summarize_confusion(conf, names)
    return {
        "miou": round(summary["miou"], 2),
        "fg_recall": pct(conf[1:, 1:k].sum(), conf[1:, :].sum()), "fg_precision": pct(conf[1:, 1:k].sum(),
                                                                                     conf[:, 1:k].sum()),
        "part_recall": pct(*hits[0, 0]), "body_recall": pct(*hits[0, 1]),
        "contour_f": round(contour["mean_f"], 2),
        "per_class": {name: {"iou": round(summary["per_class"][name]["iou"], 2), "part_recall": pct(*hits[c + 1, 0]),
                             "body_recall": pct(*hits[c + 1, 1]),
                             "contour_f": round(contour["per_class"][name]["f"], 2)}
                      for c, name in enumerate(dataset.class_names)},
    }


def score(cam_dir, dataset, gts, parts, thresholds):
    """mIoU sweep, coverage and contour F of a folder of CAM files (see DEFINITIONS); with
    ``stored_background`` for files that store a background map."""
    k = dataset.num_classes + 1
    names = ["background", *dataset.class_names]
    conf = None
    for image_id in tqdm(dataset.ids, desc=f"sweep {Path(cam_dir).name}", mininterval=1.0):
        c = sweep_confusions(gts[image_id], load_fg(cam_dir, image_id), thresholds, k)
        conf = c if conf is None else conf + c
    curve = [summarize_confusion(c, names)["miou"] for c in conf]
    best = int(np.argmax(curve))
    t = thresholds[best]
    fg_gt = conf[:, 1:, :].sum(axis=(1, 2))
    fg_hit = conf[:, 1:, 1:k].sum(axis=(1, 2))
    hits, contour = coverage(cam_dir, dataset, gts, parts, lambda d, i: cam_to_labels(load_fg(d, i), t))
    out = {"protocol": "sweep", "threshold": t, **region_scores(conf[best], hits, contour, dataset),
           "curve": [{"threshold": th, "miou": round(m, 2), "fg_recall": pct(h, g)}
                     for th, m, h, g in zip(thresholds, curve, fg_hit, fg_gt)]}
    if "hr_cam_bg" in load_cam(find_cam(cam_dir, dataset.ids[0])):
        stored = sum(confusion_matrix(gts[i], cam_to_labels(load_cam(find_cam(cam_dir, i))), k) for i in dataset.ids)
        hits, contour = coverage(cam_dir, dataset, gts, parts, lambda d, i: cam_to_labels(load_cam(find_cam(d, i))))
        out["stored_background"] = {"protocol": "stored-background", **region_scores(stored, hits, contour, dataset)}
    return out

def score_labels(cam_dir, dataset, gts, threshold=None):
    """mIoU, foreground recall / precision and contour F of CAM files at ``threshold`` (None:
    against their stored background)."""
    k = dataset.num_classes + 1
    conf, contour = np.zeros((k, k + 1), np.int64), 0
    for image_id in dataset.ids:
        cam = load_cam(find_cam(cam_dir, image_id))
        if threshold is not None:
            cam.pop("hr_cam_bg", None)
        pred = cam_to_labels(cam, threshold)
        conf += confusion_matrix(gts[image_id], pred, k)
        contour = contour + contour_counts(gts[image_id], pred, k)
    pct = lambda a, b: round(100.0 * a / max(1, b), 2)  # noqa: E731
    return {"miou": round(summarize_confusion(conf, ["background", *dataset.class_names])["miou"], 2),
            "fg_recall": pct(conf[1:, 1:k].sum(), conf[1:].sum()),
            "fg_precision": pct(conf[1:, 1:k].sum(), conf[:, 1:k].sum()),
            "contour_f": round(summarize_contour(contour, dataset.class_names)["mean_f"], 2)}


def spcam_inputs(args, work, common):
    """SP-CAM's saliency and association network, made without ground truth (module doc):
    returns (overrides for SP-CAM, what was made)."""
    prep = work / "spcam_prep"
    prep.mkdir(parents=True, exist_ok=True)
    first = work / "cam"
    made = {"first_cam": train("configs/synthetic/cam.yaml", first, args, common)}
    cams, made["first_cam"]["infer_train_seconds"] = infer(first, args, "train", prep / "cams_train",
                                                           log=prep / "cams_train.log")
    ccamh = prep / "ccamh"
    made["ccamh"] = train("configs/synthetic/ccam.yaml", ccamh, args,
                          [f"train.epochs={args.saliency_epochs}", f"method.cam_dir={cams}",
                           f"model.backbone_init={first}/checkpoints/last.pth", "model.backbone_init_prefix=net.backbone.",
                           *args.overrides], tool="tools/train_saliency.py")
    saliency = prep / "saliency_train"
    cmd = [sys.executable, "tools/infer_saliency.py", "--exp", ccamh, "--split", "train", "--data", args.data,
           "--out", saliency, "infer.binarize=false"] + (["--overwrite"] if args.overwrite else [])
    made["saliency_seconds"] = round(run_stage(cmd, prep / "saliency_train.log", args.threads)[0], 1)
    superpixel = prep / "superpixel"
    made["superpixel"] = train("configs/synthetic/superpixel.yaml", superpixel, args,
                               [f"train.epochs={args.superpixel_epochs}", f"method.sal_dir={saliency}",
                                f"method.cam_dir={cams}", *args.overrides], tool="tools/train_superpixel.py")
    made["saliency"] = "C2AM-H activation maps of the training split (0..255, infer.binarize=false)"
    made["saliency_dir"] = str(saliency)
    return [f"method.sal_dir={saliency}", f"method.superpixel_exp={superpixel}"], made


def run_spcam(exp, args, overrides, dataset, gts, parts, thresholds, common, work):
    """Train SP-CAM, infer it for every walk length of WALK_GRID and score each (module doc)."""
    inputs, made = spcam_inputs(args, work, common)
    res = train("configs/synthetic/spcam.yaml", exp, args, [*overrides, *inputs])
    res["prep"] = made
    res["walk_grid"] = {}
    for r in WALK_GRID:
        out = Path(exp) / "cams" / f"{args.split}_r{r}"
        cams, seconds = infer(exp, args, out=out, overrides=[f"method.walk_steps={r}"],
                              log=Path(exp).with_suffix(f".infer_r{r}.log"))
        swept = score(cams, dataset, gts, parts, thresholds)
        res["walk_grid"][r] = {"miou": swept["miou"], "threshold": swept["threshold"], "infer_seconds": seconds}
        if r == WALK_GRID[0]:
            res.update(swept, infer_seconds=seconds, walk_steps=r,
                       contour_f=score_labels(cams, dataset, gts, swept["threshold"])["contour_f"],
                       stored_background={"walk_steps": r, **score_labels(cams, dataset, gts)})
    best = max(res["walk_grid"].items(), key=lambda kv: kv[1]["miou"])
    res["gt_tuned"] = {"walk_steps": best[0], "threshold": best[1]["threshold"], "miou": best[1]["miou"]}
    # a ground-truth-free choice of th: the best agreement with the training split's saliency
    train_cams, _ = infer(exp, args, split="train", out=Path(exp) / "cams" / f"train_r{WALK_GRID[0]}",
                          overrides=[f"method.walk_steps={WALK_GRID[0]}"], log=Path(exp).with_suffix(".infer_train.log"))
    th = saliency_threshold(train_cams, build_dataset("synthetic", args.data, "train"),
                            made["saliency_dir"], thresholds)
    res["saliency_selected"] = {"walk_steps": WALK_GRID[0], **th,
                                **score_labels(Path(exp) / "cams" / f"{args.split}_r{WALK_GRID[0]}", dataset, gts,
                                               th["threshold"])}
    return res


def saliency_threshold(cam_dir, dataset, sal_dir, thresholds, sal_cut=0.5):
    """The background threshold whose foreground (max CAM > t) best agrees (IoU, summed over the
    split) with the saliency maps binarised at ``sal_cut``: no ground truth involved."""
    inter = np.zeros(len(thresholds))
    union = np.zeros(len(thresholds))
    ts = np.asarray(thresholds, np.float32)[:, None, None]
    for image_id in tqdm(dataset.ids, desc="saliency agreement", mininterval=1.0):
        cam = load_cam(find_cam(cam_dir, image_id))
        top = cam["hr_cam"].max(0) if len(cam["hr_cam"]) else np.zeros(cam["hr_cam"].shape[1:], np.float32)
        sal = load_gray_map(Path(sal_dir) / f"{image_id}.png", top.shape) / 255.0 > sal_cut
        fg = top[None] > ts
        inter += (fg & sal).sum((1, 2))
        union += (fg | sal).sum((1, 2))
    agreement = inter / np.maximum(union, 1)
    best = int(np.argmax(agreement))
    return {"threshold": float(thresholds[best]), "saliency_iou": round(100 * float(agreement[best]), 2)}


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
        schedule = SCHEDULES.get(base, lambda epochs: [])(args.epochs)
        overrides = [f"train.epochs={args.epochs}", f"model.weights={weights}", *COMMON, *extra, *schedule,
                     *args.overrides]
        if base in ("poc", "pnoc"):
            overrides.append(f"method.oc_exp={oc_exp}")
        exp = work / method
        if base == "spcam":
            # the first CAM is the cam row's experiment: same overrides (spcam has no variant extras)
            res = run_spcam(exp, args, overrides, dataset, gts, parts, thresholds, overrides, work)
            results[method] = res
            sel = res["saliency_selected"]
            print(f"[priors_synthetic] spcam: stored background (r 20, th 0.3) mIoU "
                  f"{res['stored_background']['miou']:.2f}; saliency-selected th {sel['threshold']:.2f}: "
                  f"{sel['miou']:.2f}; GT-tuned (r, th) = ({res['gt_tuned']['walk_steps']}, "
                  f"{res['gt_tuned']['threshold']:.2f}): {res['gt_tuned']['miou']:.2f}", flush=True)
            continue
        res = train(f"configs/synthetic/{base}.yaml", exp, args, overrides)
        cams, res["infer_seconds"] = infer(exp, args)
        res.update(score(cams, dataset, gts, parts, thresholds))
        own = (load_config(ROOT / "configs" / "synthetic" / f"{base}.yaml").get("infer") or {}).get("thresholds")
        if own:
            res["method_protocol"] = {"thresholds": own, **score(cams, dataset, gts, parts, parse_thresholds(own))}
        results[method] = res
        stored = res.get("stored_background")
        print(f"[priors_synthetic] {method}: mIoU {res['miou']:.2f} at t={res['threshold']:.2f}, "
              f"fg recall {res['fg_recall']:.2f} (part {res['part_recall']:.2f}, body {res['body_recall']:.2f}), "
              f"contour F {res['contour_f']:.2f}"
              + (f"; against the stored background: mIoU {stored['miou']:.2f}, fg recall {stored['fg_recall']:.2f}, "
                 f"contour F {stored['contour_f']:.2f}" if stored else "")
              + f", {res['seconds']:.0f}s", flush=True)
        if own:
            m = res["method_protocol"]
            print(f"[priors_synthetic] {method} (own sweep {own}): mIoU {m['miou']:.2f} at t={m['threshold']:.2f}, "
                  f"fg recall {m['fg_recall']:.2f}, contour F {m['contour_f']:.2f}", flush=True)

    write_json(args.out, {
        "benchmark": "priors_synthetic", "command": command, "definitions": DEFINITIONS,
        "setup": {"data": meta, "split": args.split, "images": len(dataset), "backbone": "resnet18 width 32 (OS16)",
                  "oc_epochs": args.oc_epochs, "epochs": args.epochs, "thresholds": args.thresholds,
                  "threads": args.threads, "init": "every compared method starts from the OC's backbone "
                  "(model.weights), new head; P-OC/P-NOC use the OC itself as their ordinary classifier",
                  "common_overrides": COMMON, "oc_overrides": args.oc_overrides,
                  "superpixel_epochs": args.superpixel_epochs, "saliency_epochs": args.saliency_epochs},
        "ordinary_classifier": oc, "results": results})
    summary = ", ".join(f"{m} {r['miou']:.1f}/{r['fg_recall']:.1f}" for m, r in results.items())
    print(f"[priors_synthetic] mIoU/fg-recall on {args.split}: {summary} -> {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
