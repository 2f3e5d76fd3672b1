"""CAM inference, evaluation and memory of wsss against the P-NOC reference's own scripts.

Rows (same machine, same inputs, each run a fresh process, wsss and reference alternating):

- ``infer``: multi-scale CAMs (0.5, 1, 1.5, 2 + flips) of ``--infer-images`` VOC-size images
  (500 x 375) with the same ResNet-50 weights (wsss's checkpoint, its keys renamed for the
  reference): ``scripts/cam/inference.py`` vs ``tools/infer_cam.py``; images / s of the loop
  (timed per image by ref_harness.py) and of the whole process; the two sides' ``hr_cam`` are
  compared.
- ``eval``: the CAM threshold sweep (0.05 .. 0.80, 16 thresholds) over ``--eval-images`` masks of
  500 x 375: ``scripts/evaluate.py --mode npy`` vs ``tools/evaluate.py --mode cam --no-contour``,
  2 workers each; whole-process images / s; the two mIoU curves are compared.
- ``memory_cam``: peak resident memory (``/usr/bin/time -v``) of CAM inference of one 500 x 375
  image, one process each (wsss ``infer.num_workers=0``).
- ``memory_rw``: peak resident memory of the random walk of one 500 x 375 image (94 x 125 grid,
  3 maps, beta 10, radius 5): wsss's sparse walk (logt 8) vs P-NOC's dense
  ``propagate_to_edge`` (ref_walk.py). The dense version's peak is reached in its first squaring
  (it then holds the affinity, the scaled affinity, T and T^2, each (hw)^2 floats) and stays
  the same for any ``exp_times``, so it runs with ``exp_times=1`` here (``--rw-full`` runs 8:
  minutes of CPU); the walks' outputs at the same logt are compared.

- ``train``: runs train_step.py (training throughput; its own defaults) first.

    python benchmarks/vs_reference.py                     # every row, training included
    python benchmarks/vs_reference.py --rows eval --repeats 3

Writes benchmarks/results/vs_reference.json (and train_step.json).
"""

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ref_common import (ROOT, add_reference_args, check_references, harness_cmd, install_split_lists,  # noqa: E402
                        item_seconds, machine, median, reference_commit, reference_env, run,
                        write_result, wsss_env)
from ref_data import make_bench_set  # noqa: E402

ROWS = ("train", "infer", "eval", "memory_cam", "memory_rw")


def write_split(data, name, ids):
    (Path(data) / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("\n".join(ids) + "\n")


def prepare(args):
    """Data set, splits (infer, one, eval), wsss's one-step CAM experiment and the same
    weights as a reference state dict."""
    work = Path(args.work)
    data = make_bench_set(work / "bench_voc", 128, 32)
    val = (data / "ImageSets/Segmentation/val.txt").read_text().split()
    train = (data / "ImageSets/Segmentation/train.txt").read_text().split()
    write_split(data, "infer", val[:args.infer_images])
    write_split(data, "one", val[:1])
    write_split(data, "eval", train[:args.eval_images])
    pnoc = check_references(args)
    install_split_lists(pnoc, data, ("train", "val", "infer", "one", "eval"))  # -> P-NOC domains bench_<split>
    exp = work / "wsss_infer_exp"
    if not (exp / "checkpoints" / "last.pth").is_file():
        run([sys.executable, ROOT / "tools/train_cam.py", "--config", ROOT / "configs/voc/cam.yaml", "--data", data,
             "--exp", exp, "--overwrite", "model.backbone=resnet50", "model.weights=null", "train.batch_size=8",
             "train.accumulate=1", "train.epochs=1", "train.num_workers=0", "train.amp=none",
             "data.train_split=train8", "augment.crop=256", "augment.resize_long=[160,320]"],
            work / "prep_infer_exp.log", env=wsss_env())
    ref_weights = work / "refwork" / "experiments" / "models" / "bench_infer.pth"
    if not ref_weights.is_file():
        import torch

        ref_weights.parent.mkdir(parents=True, exist_ok=True)
        ckpt_path = exp / "checkpoints" / "last.pth"
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        # a one-step network's CAMs are mostly below 0 (all-zero after ReLU): a non-negative head
        # on the non-negative features makes every CAM non-trivial, so the two sides' outputs compare
        ckpt["state_dict"]["net.head.weight"] = ckpt["state_dict"]["net.head.weight"].abs()
        torch.save(ckpt, ckpt_path)
        state = ckpt["state_dict"]
        renamed = {k[len("net."):].replace("head.", "classifier.", 1) if k.startswith("net.head.")
                   else k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
        torch.save(renamed, ref_weights)
    return data, pnoc, exp


# -------------------------------------------------------------------------------------- rows
def infer_run(args, side, data, pnoc, exp, split, tag, workers=2):
    work = Path(args.work)
    out = work / "runs" / f"{tag}_cams"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    timing = work / "runs" / f"{tag}.json"
    if side == "ref":
        cmd = harness_cmd(args.ref_python, pnoc / "scripts/cam/inference.py",
                          ["--dataset", "voc12", "--data_dir", f"{data}/", "--domain", f"bench_{split}", "--architecture", "resnet50",
                           "--mode", "normal", "--tag", "bench_infer", "--weights", "bench_infer",
                           "--pred_dir", f"{out}/", "--device", "cpu"],
                          timing, paths=[pnoc, Path(args.refs) / "shims"], cwd=work / "refwork", cpu_cuda=True)
        env = reference_env(args, pnoc)
    else:
        cmd = harness_cmd(sys.executable, ROOT / "tools/infer_cam.py",
                          ["--exp", exp, "--split", split, "--data", data, "--out", out, "--overwrite",
                           f"infer.num_workers={workers}", "infer.batch_size=1"], timing, bar="^cams ")
        env = wsss_env()
    info = run(cmd, work / "runs" / f"{tag}.log", env=env)
    walls, _, rss = item_seconds(timing, args.infer_warmup)
    n = len(list(out.glob("*.np[yz]")))
    return {**info, "images": n, "loop_images_per_s": round(1 / median(walls), 4) if walls else None,
            "process_images_per_s": round(n / info["wall_s"], 4), "main_maxrss_mib": rss, "out": str(out)}


def compare_cams(ref_dir, wsss_dir):
    """Max |hr_cam difference| between the two sides' files of the same images."""
    diffs = []
    for p in sorted(Path(ref_dir).glob("*.npy")):
        ref = np.load(p, allow_pickle=True).item()
        ours = np.load(Path(wsss_dir) / f"{p.stem}.npz")
        diffs.append(float(np.abs(ref["hr_cam"].astype(np.float32) - ours["hr_cam"].astype(np.float32)).max()))
    return max(diffs) if diffs else None


def eval_run(args, side, data, pnoc, tag):
    work = Path(args.work)
    if side == "ref":
        cmd = [args.ref_python, pnoc / "scripts/evaluate.py", "--experiment_name", "bench_eval", "--dataset", "voc12",
               "--domain", "bench_eval", "--data_dir", f"{data}/", "--pred_dir", f"{data}/cams_npy/", "--mode", "npy",
               "--num_workers", 2, "--min_th", 0.05, "--max_th", 0.81, "--step_th", 0.05, "--crf_t", 0]
        env = dict(reference_env(args, pnoc), PYTHONPATH=f"{pnoc}:{Path(args.refs) / 'shims'}")
    else:
        cmd = [sys.executable, ROOT / "tools/evaluate.py", "--data", data, "--dataset", "voc", "--split", "eval",
               "--pred", data / "cams", "--mode", "cam", "--thresholds", "0.05:0.80:0.05", "--no-contour",
               "--workers", 2]
        env = wsss_env()
    log = work / "runs" / f"{tag}.log"
    info = run(cmd, log, env=env)
    text = log.read_text()
    if side == "ref":
        curve = [float(m) for m in re.findall(r"^Th=[0-9.]+ mIoU=([0-9.]+)%", text, flags=re.M)]
    else:
        curve = [float(m) for m in re.findall(r"^\s*0\.\d+\s+([0-9.]+)", text, flags=re.M)]
    return {**info, "images": args.eval_images, "process_images_per_s": round(args.eval_images / info["wall_s"], 3),
            "best_miou": max(curve) if curve else None, "curve": curve}


def walk_run(args, side, pnoc, logt, tag):
    work = Path(args.work)
    out = work / "runs" / f"{tag}.json"
    cmd = [args.ref_python if side == "ref" else sys.executable, Path(__file__).parent / "ref_walk.py",
           "--side", side, "--pnoc", pnoc, "--logt", logt, "--out", out]
    info = run(cmd, work / "runs" / f"{tag}.log", env=reference_env(args, pnoc) if side == "ref" else wsss_env())
    return {**info, **json.loads(out.read_text())}


# ------------------------------------------------------------------------------------ driver
def alternate(args, fn):
    """``fn(side, round)`` for ``--repeats`` rounds, wsss and reference alternating (A B B A ...)."""
    runs = []
    for k in range(args.repeats):
        for side in (("wsss", "ref") if k % 2 == 0 else ("ref", "wsss")):
            r = fn(side, k)
            runs.append({"side": side, **r})
            print(f"  {side:4s} round {k}: " + ", ".join(f"{key} {r[key]}" for key in
                  ("loop_images_per_s", "process_images_per_s", "max_rss_mib", "extra_rss_mib", "seconds")
                  if r.get(key) is not None) + f" (load {r['load_before']})", flush=True)
    return runs


def side_median(runs, key):
    out = {}
    for side in ("wsss", "ref"):
        vals = [r[key] for r in runs if r["side"] == side and r.get(key) is not None]
        if vals:
            out[side] = round(median(vals), 4)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_reference_args(ap)
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--infer-images", type=int, default=6)
    ap.add_argument("--infer-warmup", type=int, default=1, help="images not timed in the loop figure")
    ap.add_argument("--eval-images", type=int, default=64)
    ap.add_argument("--rw-full", action="store_true", help="the dense walk with exp_times 8 (minutes of CPU)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/vs_reference.json"))
    ap.add_argument("--merge", action="store_true", help="keep the other rows already in --out")
    args = ap.parse_args(argv)
    rows = args.rows.split(",")
    (Path(args.work) / "runs").mkdir(parents=True, exist_ok=True)
    if "train" in rows:
        import train_step

        train_step.main(["--refs", args.refs, "--ref-python", args.ref_python, "--work", args.work])
    data, pnoc, exp = prepare(args)
    result = {"reference": {"repo": "lucasdavid/PNOC", "commit": reference_commit(pnoc)}, "machine": machine(),
              "rows": {}}
    if "infer" in rows:
        print("infer:", flush=True)
        runs = alternate(args, lambda side, k: infer_run(args, side, data, pnoc, exp, "infer", f"infer_{side}_{k}"))
        last = {r["side"]: r["out"] for r in runs}
        result["rows"]["infer"] = {
            "images": args.infer_images, "loop_images_per_s": side_median(runs, "loop_images_per_s"),
            "process_images_per_s": side_median(runs, "process_images_per_s"),
            "max_abs_diff_hr_cam": compare_cams(last["ref"], last["wsss"]), "all": runs}
    if "eval" in rows:
        print("eval:", flush=True)
        runs = alternate(args, lambda side, k: eval_run(args, side, data, pnoc, f"eval_{side}_{k}"))
        curves = {r["side"]: r["curve"] for r in runs}
        diff = (max(abs(a - b) for a, b in zip(curves["wsss"], curves["ref"]))
                if curves.get("wsss") and len(curves["wsss"]) == len(curves.get("ref") or []) else None)
        result["rows"]["eval"] = {"images": args.eval_images,
                                  "process_images_per_s": side_median(runs, "process_images_per_s"),
                                  "max_miou_curve_diff": diff, "all": runs}
    if "memory_cam" in rows:
        print("memory_cam:", flush=True)
        runs = alternate(args, lambda side, k: infer_run(args, side, data, pnoc, exp, "one", f"mem_{side}_{k}",
                                                         workers=0))
        result["rows"]["memory_cam"] = {"image": "500x375", "max_rss_mib": side_median(runs, "max_rss_mib"),
                                        "all": runs}
    if "memory_rw" in rows:
        print("memory_rw:", flush=True)
        runs = alternate(args, lambda side, k: walk_run(args, side, pnoc, 8 if side == "wsss" or args.rw_full else 1,
                                                        f"rw_{side}_{k}"))
        check = {s: walk_run(args, s, pnoc, 1, f"rw_check_{s}") for s in ("wsss", "ref")}
        result["rows"]["memory_rw"] = {
            "image": "500x375 (grid 94x125, 11750 nodes, 3 maps)", "max_rss_mib": side_median(runs, "max_rss_mib"),
            "extra_rss_mib": side_median(runs, "extra_rss_mib"), "seconds": side_median(runs, "seconds"),
            "reference_exp_times": 8 if args.rw_full else 1,
            "rel_diff_of_sums_logt1": abs(check["wsss"]["out_sum"] - check["ref"]["out_sum"]) / abs(check["ref"]["out_sum"]),
            "all": runs}
    write_result(result, "vs_reference.py", argv, args.out, args.merge)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "all"} for k, v in result["rows"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
