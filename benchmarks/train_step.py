"""Training throughput (images / s) of wsss against the P-NOC reference's own training scripts.

Rows: vanilla CAM (P-NOC ``scripts/cam/train_vanilla.py`` vs ``tools/train_cam.py --method cam``),
P-NOC (``scripts/cam/train_pnoc.py`` vs ``--method pnoc``) and C2AM-H
(``scripts/ccam/train_hints.py`` vs ``tools/train_saliency.py --method ccam``): the same backbone
(ResNet-50, output stride 16, random init), the same input recipe (long side resized to 140..280
then a 224 crop, P-NOC's 320..640 / 512 scaled for a CPU; C2AM-H: 257 x 257 then a 224 crop), batch 8, 2 loader workers, fp32, on the
VOC-shaped benchmark set of ref_data.py (500 x 375 JPEGs). Each side runs its unmodified script
under ref_harness.py, which times the script's own progress bar step by step:

- ``loop``: the script's own loop and data pipeline (DataLoader workers included);
- ``step``: the same loop with every DataLoader repeating its first batch (the pure model step);
- ``data``: the training data pipeline alone, one process (``ref_pipeline.py``): images / s of
  one loader worker, i.e. how many workers a GPU at a given speed needs.

Runs alternate wsss / reference (A B A B, ``--repeats`` rounds, the side that starts alternates)
and each run is a fresh process; the table gives medians over rounds of the median step time
after ``--warmup`` steps, and the ratio wsss / reference of throughputs (> 1: wsss is faster).
The machine's load average is recorded with every run: other jobs slow both sides alike.

    python benchmarks/train_step.py                       # every row, CPU
    python benchmarks/train_step.py --rows cam --repeats 1 --steps 6
    python benchmarks/train_step.py --device cuda --precisions fp32,bf16,channels_last   # GPU

On CUDA, ``--precisions`` adds wsss rows in bf16 autocast and with channels_last (the reference
offers fp16 autocast only: ``--mixed_precision true``, run as its ``fp16`` row).
Writes benchmarks/results/train_step.json.
"""

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ref_common import (PNOC_COMMIT, REFERENCES, ROOT, add_reference_args, check_references, harness_cmd,  # noqa: E402
                        install_split_lists, item_seconds, machine, median, reference_commit, reference_env,
                        run, write_result, wsss_env)
from ref_data import make_bench_set  # noqa: E402

ROWS = ("cam", "pnoc", "ccamh")
#: psa-style reference training scripts (ResNet-38, their own fixed input recipe: long side 448..768,
#: colour jitter, then the crop), timed by optimizer steps; the wsss side trains the same method with
#: its VOC config (ResNet-38d) at the bench crop, batch and workers
PSA_ROWS = {
    "icam": {"repo": "icam", "script": "train_cam.py", "cpu": True},
    "cpn": {"repo": "CPN", "script": "train_cpn.py", "cpu": True},
    "aeft": {"repo": "AEFT", "script": "train.py", "cpu": False},  # hard-codes CUDA (model device 'cuda')
}


def settings(args):
    lo, hi = (int(v) for v in args.resize_long.split(","))
    return {"backbone": args.backbone, "batch": args.batch_size, "crop": args.crop, "resize_long": [lo, hi],
            "resize_square": int(args.crop * 1.15), "workers": args.workers, "epochs": 2}


# ---------------------------------------------------------------------------------- commands
def reference_args(row, s, data, work, precision):
    common = ["--dataset", "voc12", "--data_dir", f"{data}/", "--domain_train", "bench_train",
              "--domain_valid", "bench_val", "--architecture", s["backbone"], "--batch_size", s["batch"],
              "--max_epoch", s["epochs"], "--num_workers", s["workers"], "--validate", "false",
              "--device", "cuda" if precision != "cpu" else "cpu", "--seed", 0,
              "--mixed_precision", "true" if precision == "fp16" else "false", "--tag", f"bench_{row}"]
    if row == "ccamh":
        return "scripts/ccam/train_hints.py", common + [
            "--cams_dir", f"{data}/cams_npy/", "--weights", "", "--image_size", s["crop"]]
    size = ["--backbone_weights", "", "--image_size", s["crop"], "--min_image_size", s["resize_long"][0],
            "--max_image_size", s["resize_long"][1]]
    if row == "cam":
        return "scripts/cam/train_vanilla.py", common + size
    return "scripts/cam/train_pnoc.py", common + size + [
        "--oc-architecture", s["backbone"], "--oc-pretrained", f"{work}/ref_oc.pth", "--label_smoothing", 0.1]


def psa_args(row, s, data, work, refs):
    """Command-line arguments of a psa-style reference (run from its own folder)."""
    if row == "icam":
        return ["--dataset", "voc2012", "--data_root", work / "psa_data", "--weights", work / "empty.pth",
                "--batch_size", s["batch"], "--crop_size", s["crop"], "--max_epoches", s["epochs"],
                "--num_workers", s["workers"], "--session_name", work / "icam_ckpt", "--tblog_dir", work / "icam_tb"]
    if row == "cpn":
        return ["--voc12_root", data, "--train_list", f"{refs}/CPN/voc12/bench_train.txt", "--weights",
                work / "empty.pth", "--batch_size", s["batch"], "--crop_size", s["crop"],
                "--max_epoches", s["epochs"], "--num_workers", s["workers"]]
    return ["--name", "bench_aeft", "--train_list", "voc12/bench_train.txt", "--val_list", "voc12/bench_val.txt",
            "--batch_size", s["batch"], "--crop", s["crop"], s["crop"], "--max_epochs", s["epochs"]]


def prepare_psa(args, data):
    """What the psa-style references read from fixed paths: ``voc12/cls_labels.npy`` (labels of the
    bench images merged into the copy's file), id lists with VOC-style lines, ICAM's data root
    ``<root>/VOCdevkit/VOC2012`` and list ``voc/train_aug.txt`` (the copy's original is kept as
    ``.orig``), AEFT's ``data/VOC2012`` (a link), and an empty state dict as "ImageNet weights" (random init)."""
    import numpy as np
    import torch

    from ref_data import labels_of

    work, refs = Path(args.work), Path(args.refs)
    torch.save({}, work / "empty.pth")
    labels = labels_of(data)
    lines = {split: "".join(f"/JPEGImages/{i}.jpg /SegmentationClass/{i}.png\n"
                            for i in (data / "ImageSets/Segmentation" / f"{split}.txt").read_text().split())
             for split in ("train", "val")}
    for repo in ("CPN", "AEFT", "icam"):
        folder = refs / repo / ("voc" if repo == "icam" else "voc12")
        if not folder.is_dir():
            continue
        for split, text in lines.items():
            (folder / f"bench_{split}.txt").write_text(text)
        if repo != "icam":
            path = folder / "cls_labels.npy"
            merged = np.load(path, allow_pickle=True).item() if path.is_file() else {}
            merged.update(labels)
            np.save(path, merged)
    aeft = refs / "AEFT"
    if aeft.is_dir():  # AEFT reads ./data/VOC2012
        link = aeft / "data" / "VOC2012"
        link.parent.mkdir(exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(data)
    icam = refs / "icam" / "voc"
    if icam.is_dir():
        orig = icam / "train_aug.txt.orig"
        if not orig.is_file():
            (icam / "train_aug.txt").rename(orig)
        (icam / "train_aug.txt").write_text(lines["train"])
        np.save(data / "cls_labels.npy", labels)
        root = work / "psa_data" / "VOCdevkit"
        root.mkdir(parents=True, exist_ok=True)
        if not (root / "VOC2012").exists():
            (root / "VOC2012").symlink_to(data)


def wsss_args(row, s, data, work, precision):
    # psa-style rows keep their config's ResNet-38d, the reference's network
    backbone = [] if row in PSA_ROWS else [f"model.backbone={s['backbone']}"]
    over = [*backbone, "model.weights=null", f"train.batch_size={s['batch']}",
            "train.accumulate=1", f"train.epochs={s['epochs']}", f"train.num_workers={s['workers']}",
            f"train.amp={'bf16' if precision == 'bf16' else 'fp16' if precision == 'fp16' else 'none'}",
            f"train.channels_last={'true' if precision == 'channels_last' else 'false'}",
            f"train.device={'cpu' if precision == 'cpu' else 'cuda'}", "data.train_split=train"]
    if row == "ccamh":
        return "tools/train_saliency.py", ["--method", "ccam", "--config", ROOT / "configs/voc/ccam.yaml",
                                           "--data", data, "--exp", f"{work}/wsss_ccamh", "--overwrite"] + over + [
            f"augment.resize_square={s['resize_square']}", f"augment.crop={s['crop']}",
            f"method.cam_dir={data}/cams"]
    size = [f"augment.resize_long=[{s['resize_long'][0]},{s['resize_long'][1]}]", f"augment.crop={s['crop']}"]
    if row == "cam" or row in PSA_ROWS:  # the psa-style rows: the method's VOC recipe, the bench crop
        size = size if row == "cam" else [f"augment.crop={s['crop']}"]
        return "tools/train_cam.py", ["--config", ROOT / f"configs/voc/{row}.yaml", "--data", data,
                                      "--exp", f"{work}/wsss_{row}", "--overwrite"] + over + size
    return "tools/train_cam.py", ["--config", ROOT / "configs/voc/pnoc.yaml", "--data", data,
                                  "--exp", f"{work}/wsss_pnoc", "--overwrite", f"method.oc_exp={work}/wsss_oc"
                                  ] + over + size


# -------------------------------------------------------------------------------- preparation
def prepare(args, s):
    """Data set, split lists in the reference copy, and the ordinary classifier P-NOC starts from
    on each side (random init: P-NOC's OC as a state dict; wsss's as a one-step experiment)."""
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = make_bench_set(work / "bench_voc", args.train_images, 32)
    pnoc = check_references(args)
    install_split_lists(pnoc, data)
    if any(r in PSA_ROWS for r in args.rows):
        prepare_psa(args, data)
    if "pnoc" in args.rows:
        if not (work / "ref_oc.pth").is_file():
            code = ("import sys, torch; sys.path[:0] = sys.argv[1:3]; from core.networks import Classifier; "
                    f"torch.manual_seed(0); m = Classifier({s['backbone']!r}, 20, backbone_weights='', mode='fix'); "
                    "torch.save(m.state_dict(), sys.argv[3])")
            run([args.ref_python, "-c", code, pnoc, Path(args.refs) / "shims", work / "ref_oc.pth"],
                work / "prep_ref_oc.log")
        if not (work / "wsss_oc" / "checkpoints" / "last.pth").is_file():
            run([sys.executable, ROOT / "tools/train_cam.py", "--config", ROOT / "configs/voc/oc.yaml", "--data", data,
                 "--exp", work / "wsss_oc", "--overwrite", f"model.backbone={s['backbone']}", "model.weights=null",
                 "train.batch_size=8", "train.accumulate=1", "train.epochs=1", "train.num_workers=0",
                 "train.amp=none", "data.train_split=train8", "augment.crop=256", "augment.resize_long=[160,320]",
                 "augment.randaugment=false"], work / "prep_wsss_oc.log", env=wsss_env())
    return data, pnoc


# ------------------------------------------------------------------------------------ running
def timed_run(args, side, row, mode, s, data, pnoc, precision, tag):
    """One child process; returns median seconds per step (and CPU) after the warm-up."""
    work = Path(args.work)
    timing = work / "runs" / f"{tag}.json"
    timing.parent.mkdir(parents=True, exist_ok=True)
    steps = args.warmup + args.steps
    if side == "ref" and row in PSA_ROWS:
        repo = Path(args.refs) / PSA_ROWS[row]["repo"]
        cmd = harness_cmd(args.ref_python, repo / PSA_ROWS[row]["script"], psa_args(row, s, data, work, args.refs),
                          timing, paths=[repo, Path(args.refs) / "shims"], cwd=repo, max_steps=steps,
                          fixed_batch=mode == "step", cpu_cuda=True,
                          options=("--time-optimizer", "--legacy"))
        env = reference_env(args, pnoc)
    elif side == "ref":
        script, a = reference_args(row, s, data, work, precision)
        cmd = harness_cmd(args.ref_python, pnoc / script, a, timing, paths=[pnoc, Path(args.refs) / "shims"],
                          cwd=work / "refwork", max_steps=steps, fixed_batch=mode == "step")
        env = reference_env(args, pnoc)
    else:
        script, a = wsss_args(row, s, data, work, precision)
        cmd = harness_cmd(sys.executable, ROOT / script, a, timing, max_steps=steps, fixed_batch=mode == "step",
                          bar=r"^epoch \d")  # the training loop, not the data checks before it
        env = wsss_env()
    info = run(cmd, work / "runs" / f"{tag}.log", env=env)
    walls, cpus, rss = item_seconds(timing, args.warmup)
    # CUDA runs asynchronously and the scripts synchronise at different steps (every step for
    # P-NOC's .item(), every log_every steps for wsss): the window's mean, not the median step
    sec = sum(walls) / len(walls) if precision != "cpu" else median(walls)
    return {**info, "step_s": round(sec, 4), "images_per_s": round(s["batch"] / sec, 3),
            "mean_step_s": round(sum(walls) / len(walls), 4),
            "main_cpu_s_per_step": round(median(cpus), 4), "steps_timed": len(walls), "maxrss_mib": rss}


def pipeline_run(args, side, row, s, data, pnoc, tag):
    work = Path(args.work)
    out = work / "runs" / f"{tag}.json"
    cmd = [args.ref_python if side == "ref" else sys.executable, Path(__file__).parent / "ref_pipeline.py",
           "--side", side, "--row", row, "--data", data, "--pnoc", pnoc, "--shims", Path(args.refs) / "shims",
           "--images", args.pipeline_images, "--out", out, "--crop", s["crop"],
           "--resize-long", f"{s['resize_long'][0]},{s['resize_long'][1]}"]
    info = run(cmd, work / "runs" / f"{tag}.log", env=wsss_env() if side == "wsss" else reference_env(args, pnoc))
    res = json.loads(out.read_text())
    return {**info, **res}


def wsss_has(row):
    from wsss.cams import METHODS

    return row in METHODS.names()


def summarise(runs):
    """Median over rounds of each side's figures, and the ratio wsss / reference."""
    out = {}
    for side in ("wsss", "ref"):
        rs = [r for r in runs if r["side"] == side]
        if rs:
            key = "images_per_s"
            out[side] = {key: round(median([r[key] for r in rs]), 3),
                         "runs": [r[key] for r in rs],
                         "load": [r["load_before"] for r in rs]}
    if "wsss" in out and "ref" in out:
        out["ratio"] = round(out["wsss"]["images_per_s"] / out["ref"]["images_per_s"], 3)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_reference_args(ap)
    ap.add_argument("--rows", default=",".join(ROWS),
                    help=f"comma-separated, of {', '.join(ROWS)}; reference-only: {', '.join(PSA_ROWS)}")
    ap.add_argument("--modes", default="loop,step,data", help="loop (script + data), step (fixed batch), data")
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--resize-long", default="140,280")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of both sides")
    ap.add_argument("--train-images", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=2, help="steps not timed at the start of each run")
    ap.add_argument("--steps", type=int, default=5, help="steps timed per run")
    ap.add_argument("--repeats", type=int, default=2, help="rounds of A B runs")
    ap.add_argument("--pipeline-images", type=int, default=48)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--precisions", default=None,
                    help="CUDA: wsss rows among fp32,bf16,fp16,channels_last (reference: fp32, fp16)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/train_step.json"))
    ap.add_argument("--merge", action="store_true", help="keep the other rows already in --out")
    args = ap.parse_args(argv)
    args.rows = [r for r in args.rows.split(",") if r]
    modes = args.modes.split(",")
    s = settings(args)
    data, pnoc = prepare(args, s)
    precisions = ["cpu"] if args.device == "cpu" else (args.precisions or "fp32").split(",")
    result = {"settings": {**s, "warmup_steps": args.warmup, "timed_steps": args.steps, "repeats": args.repeats,
                           "device": args.device, "data": "ref_data.py: 500x375 JPEG, 128 train images"},
              "reference": {"repo": REFERENCES["PNOC"][0], "commit": reference_commit(pnoc), "expected": PNOC_COMMIT},
              "machine": machine(), "rows": {}}
    for row in args.rows:
        for precision in precisions:
            for mode in modes:
                if mode == "data" and precision not in ("cpu", "fp32"):
                    continue
                runs = []
                for k in range(args.repeats):
                    order = ("wsss", "ref") if k % 2 == 0 else ("ref", "wsss")
                    for side in order:
                        if side == "ref" and precision in ("bf16", "channels_last"):
                            continue  # the reference has neither
                        if side == "wsss" and row in PSA_ROWS and not wsss_has(row):
                            continue  # reference-only row until the method lands in wsss
                        if side == "ref" and row in PSA_ROWS and (mode == "data" or (
                                precision == "cpu" and not PSA_ROWS[row]["cpu"])):
                            continue
                        tag = f"{row}_{mode}_{precision}_{side}_{k}"
                        if mode == "data":
                            r = pipeline_run(args, side, row, s, data, pnoc, tag)
                        else:
                            r = timed_run(args, side, row, mode, s, data, pnoc, precision, tag)
                        runs.append({"side": side, **r})
                        print(f"{row:6s} {mode:5s} {precision:13s} {side:4s} round {k}: "
                              f"{r['images_per_s']:8.3f} img/s  (load {r['load_before']})", flush=True)
                key = f"{row}/{mode}" + ("" if precision == "cpu" else f"/{precision}")
                result["rows"][key] = {**summarise(runs), "all": runs}
                if row in PSA_ROWS:  # its own reference, not P-NOC (settings: batch, crop, workers only)
                    folder = PSA_ROWS[row]["repo"]
                    github, expected, _ = REFERENCES[folder]
                    result["rows"][key]["reference"] = {
                        "repo": github, "commit": reference_commit(Path(args.refs) / folder), "expected": expected,
                        "network": "ResNet-38d on both sides, random init"}
                ratio = result["rows"][key].get("ratio")
                print(f"== {key}: ratio wsss/ref {ratio if ratio is not None else '-'}", flush=True)
    write_result(result, "train_step.py", argv, args.out, args.merge)
    print(table(result))
    return 0


def table(result):
    lines = ["| row | wsss img/s | reference img/s | wsss / reference |", "| --- | ---: | ---: | ---: |"]
    for key, r in result["rows"].items():
        w, ref = r.get("wsss", {}).get("images_per_s"), r.get("ref", {}).get("images_per_s")
        ratio = r.get("ratio")
        lines.append(f"| {key} | {w if w is not None else '-'} | {ref if ref is not None else '-'} | "
                     f"{'-' if ratio is None or math.isnan(ratio) else ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
