"""Every registered CAM method through the whole pipeline on the synthetic benchmark, side by side.

    python benchmarks/methods_synthetic.py --data data/synthetic --work experiments/methods \
        --out benchmarks/results/methods_synthetic.json          # also writes .md and .png next to it

For every method M of ``wsss.cams.METHODS`` that has ``configs/synthetic/M.yaml`` (or those of
``--methods``), the same four stages that ``runners/demo.sh`` runs for P-NOC, with the same
backbone (the configs' ResNet-18 w32) and the same budget per stage (the stage configs):

0. ``oc`` (once, shared): the ordinary classifier (``configs/synthetic/oc.yaml``), whose backbone
   every method but P-OC / P-NOC starts from (it stands in for ImageNet weights,
   ``runners/1-priors.sh``) and which P-OC / P-NOC erase against. Timed on its own.
1. ``priors``: ``runners/1-priors.sh`` with ``METHOD=M``: train M (2 epochs from the OC's
   backbone; P-OC / P-NOC 4 epochs from scratch, their synthetic recipe), infer its CAMs
   (train + val), score them.
2. ``saliency``: ``runners/2-saliency.sh`` without PoolNet: C2AM-H trained on M's CAMs; its
   activations feed the affinity labels (as in the demo). Skipped when M's config says
   ``pipeline.saliency: none`` (the affinity labels then come from the CAMs alone).
3. ``postprocess``: ``runners/3-rw.sh`` (affinity labels, AffinityNet, random walk, label CRF),
   or the script named by M's ``pipeline.postprocess`` (with ``pipeline.env``), which must write
   the pseudo masks of the training split to ``$EXP/pseudo/<train split>`` and
   ``$EXP/eval_rw_<train split>.json`` as runner 3 does.
4. ``segmentation``: ``runners/4-segmentation.sh``: DeepLab v3+ on the pseudo masks (backbone
   from M's CAM network), scored on val with and without dCRF.

Scores: CAM mIoU on val at the best threshold of the sweep, fg recall at that threshold (any
foreground class, as in ``benchmarks/priors_synthetic.py``), contour F (icam definition), the
pseudo masks' mIoU on the training split, DeepLab's val mIoU with and without dCRF; seconds of
wall time and CPU time per stage. Everything is resumable: a finished (method, stage) is skipped
(``--overwrite`` redoes it); the runners resume unfinished stages; the results of every method
found in ``--work`` are (re)collected into ``--out`` at the end, so a new method costs one run
of this command; rows of ``--out`` for methods that ``--work`` does not hold (an earlier run's
work folder) are kept, marked with the command that made them, when they were made on the same
data.
"""

import argparse
import json
import os
import resource
import shlex
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.priors_synthetic import ground_truth, score as cam_coverage, score_labels  # noqa: E402
from benchmarks.stage_run import run_record, sh  # noqa: E402
from wsss.cams import METHODS  # noqa: E402
from wsss.cli import run_main  # noqa: E402
from wsss.config import load_config  # noqa: E402
from wsss.data import build_dataset  # noqa: E402
from wsss.data.io import atomic_path, write_json, write_text  # noqa: E402
from wsss.errors import ConfigError, DataError  # noqa: E402

STAGES = ("priors", "saliency", "postprocess", "segmentation")
PIPELINE_DEFAULTS = {"saliency": "ccamh", "postprocess": "runners/3-rw.sh", "env": {}}
SEG = "synthetic_deeplabv3plus"
DEFINITIONS = {
    "cam_miou": "val CAM mIoU (%) at the best background threshold of the sweep 0.05..0.95 (runner 1, "
                "tools/evaluate.py --mode cam; the threshold is tuned on val's ground truth, the usual protocol "
                "for priors)",
    "cam_threshold": "that threshold (none for CAMs scored against their method's stored background, e.g. ICAM)",
    "fg_recall": "(%) val ground-truth object pixels predicted as any foreground class at that threshold",
    "contour_f": "contour F-score (%) of the CAM label maps at that threshold (icam definition)",
    "saliency_miou": "C2AM-H fg/bg mIoU (%) on val (0/255 masks; the activations feed the affinity labels)",
    "pseudo_miou": "pseudo masks' mIoU (%) on the training split they were made for",
    "seg_miou": "DeepLab v3+ val mIoU (%), the config's infer.scales (synthetic: 1) + flip; seg_crf_miou: with dCRF",
    "seconds": "wall-clock seconds per stage (2 shared cores: noisy); cpu_seconds: user + sys of the stage",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic", help="synthetic dataset root (tools/make_synthetic.py)")
    p.add_argument("--work", default="experiments/methods", help="experiments folder (one subfolder per method)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/methods_synthetic.json"),
                   help="results JSON; the table (.md) and the figure (.png) go next to it")
    p.add_argument("--methods", default=None,
                   help="comma-separated methods (default: every registered method with configs/synthetic/<name>.yaml)")
    p.add_argument("--overwrite", action="store_true", help="redo every stage of the chosen methods")
    p.add_argument("--overrides", default="",
                   help="key=value config overrides for every stage, space-separated (e.g. a tiny smoke run: "
                        "'train.epochs=1 train.batch_size=8'); the budget of the recorded table is the configs'")
    return p.parse_args(argv)


def available_methods():
    """{name: config path or None} of every registered CAM method."""
    return {m: (ROOT / "configs/synthetic" / f"{m}.yaml") if (ROOT / "configs/synthetic" / f"{m}.yaml").is_file()
            else None for m in METHODS.names()}


def pipeline_of(config):
    """The method's post-processing recipe: ``PIPELINE_DEFAULTS`` <- the config's ``pipeline`` section."""
    spec = {**PIPELINE_DEFAULTS, **(load_config(config).get("pipeline") or {})}
    if spec["saliency"] not in ("ccamh", "none"):
        raise ConfigError(f"pipeline.saliency={spec['saliency']!r}", path=config, fix="use ccamh or none")
    if not (ROOT / spec["postprocess"]).is_file():
        raise ConfigError(f"pipeline.postprocess script not found: {spec['postprocess']}", path=config,
                          fix="name a script of runners/ (default runners/3-rw.sh)")
    return spec


class StageClock:
    """Runs a stage once: its wall and CPU seconds go to ``<dir>/<stage>.json``; finished stages are skipped."""

    def __init__(self, folder, overwrite):
        self.folder, self.overwrite = Path(folder), overwrite
        self.folder.mkdir(parents=True, exist_ok=True)

    def done(self, stage):
        p = self.folder / f"{stage}.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def run(self, stage, cmd, env):
        if self.done(stage) and not self.overwrite:
            print(f"[methods_synthetic] {self.folder.parent.name}/{stage}: finished, skipped", flush=True)
            return
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        sh(cmd, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        write_json(self.folder / f"{stage}.json", {"seconds": round(time.perf_counter() - start, 1),
                                                   "cpu_seconds": round(cpu, 1), "command": shlex.join(cmd)})


def train_oc(args, env):
    """The shared ordinary classifier (stage ``oc``), as runners/1-priors.sh trains it; returns its folder."""
    oc = Path(args.work).resolve() / "oc"
    StageClock(oc / "stages", False).run(
        "oc", [env["PYTHON"], "tools/train_cam.py", "--method", "cam", "--config", "configs/synthetic/oc.yaml",
               "--data", env["DATA_ROOT"], "--exp", str(oc / "synthetic_oc"), *env.get("OVERRIDES", "").split()], env)
    return oc / "synthetic_oc"


def run_method(method, config, args, env0):
    """The four stages of one method in ``<work>/<method>``."""
    work = Path(args.work).resolve()
    exp_root = work / method
    spec = pipeline_of(config)
    clock = StageClock(exp_root / "stages", args.overwrite)
    priors = exp_root / f"synthetic_{method}"
    env = {**env0, "EXP_ROOT": str(exp_root), "METHOD": method, "PRIORS": str(priors),
           "OVERWRITE": "1" if args.overwrite else "0"}
    env["OC_EXP"] = str(train_oc(args, env0))
    clock.run("priors", ["bash", "runners/1-priors.sh"], env)
    if spec["saliency"] == "ccamh":
        clock.run("saliency", ["bash", "runners/2-saliency.sh"], {**env, "WITH_POOLNET": "0"})
        env["SALIENCY"] = str(exp_root / "synthetic_ccamh" / "activation" / "train")
    clock.run("postprocess", ["bash", spec["postprocess"]],
              {**env, "EXP": str(exp_root / "synthetic_rw"), **{k: str(v) for k, v in spec["env"].items()}})
    clock.run("segmentation", ["bash", "runners/4-segmentation.sh"],
              {**env, "MASKS": str(exp_root / "synthetic_rw" / "pseudo" / "train")})


def read_json(path, fix):
    path = Path(path)
    if not path.is_file():
        raise DataError("result missing", path=path, fix=fix)
    return json.loads(path.read_text())


def stage_seconds(path):
    s = json.loads(Path(path).read_text())
    return {"seconds": s["seconds"], "cpu_seconds": s["cpu_seconds"]}


def collect(method, args, gt_cache):
    """Scores and seconds of one finished method folder."""
    exp_root = Path(args.work).resolve() / method
    fix = f"rerun this benchmark with --methods {method}"
    priors = exp_root / f"synthetic_{method}"
    cam = read_json(priors / "eval_cam_val.json", fix)
    coverage_path = priors / "coverage_val.json"
    if coverage_path.is_file():
        coverage = json.loads(coverage_path.read_text())
    else:
        if "gts" not in gt_cache:
            dataset = build_dataset("synthetic", args.data, "val")
            meta = json.loads((Path(args.data) / "meta.json").read_text())["config"]
            gts, parts = ground_truth(dataset, meta, "val")
            gt_cache.update(dataset=dataset, gts=gts, parts=parts)
        if "curve" in cam:
            thresholds = [float(c["threshold"]) for c in cam["curve"]]
            full = cam_coverage(priors / "cams" / "val", gt_cache["dataset"], gt_cache["gts"], gt_cache["parts"],
                                thresholds)
            coverage = {k: full[k] for k in ("miou", "threshold", "fg_recall", "fg_precision", "part_recall",
                                             "body_recall")}
        else:  # CAMs with their method's stored background: scored against it, no sweep
            labels = score_labels(priors / "cams" / "val", gt_cache["dataset"], gt_cache["gts"])
            coverage = {"miou": labels["miou"], "threshold": None, "fg_recall": labels["fg_recall"],
                        "fg_precision": labels["fg_precision"], "part_recall": None, "body_recall": None}
        write_json(coverage_path, coverage)
    row = {"cam_miou": round(cam["miou"], 2), "cam_threshold": cam.get("threshold"),
           "fg_recall": coverage["fg_recall"], "fg_precision": coverage["fg_precision"],
           "part_recall": coverage["part_recall"], "body_recall": coverage["body_recall"],
           "contour_f": None if cam.get("contour_f") is None else round(cam["contour_f"]["mean_f"], 2)}
    sal = exp_root / "synthetic_ccamh" / "eval_saliency_val.json"
    row["saliency_miou"] = round(json.loads(sal.read_text())["miou"], 2) if sal.is_file() else None
    row["pseudo_miou"] = round(read_json(exp_root / "synthetic_rw" / "eval_rw_train.json", fix)["miou"], 2)
    row["seg_miou"] = round(read_json(exp_root / SEG / "eval_raw_val.json", fix)["miou"], 2)
    row["seg_crf_miou"] = round(read_json(exp_root / SEG / "eval_crf_val.json", fix)["miou"], 2)
    row["stages"] = {stage: stage_seconds(exp_root / "stages" / f"{stage}.json") for stage in STAGES
                     if (exp_root / "stages" / f"{stage}.json").is_file()}
    row["pipeline"] = pipeline_of(ROOT / "configs/synthetic" / f"{method}.yaml")
    return row


def keep_earlier_rows(out, results, data):
    """``({method: row}, shared)`` of the earlier results file ``out`` for the methods that
    ``results`` (this run's work folder) lacks, when that run used the same ``data``; each kept
    row names the command that made it (``row["run"]``). Lets a table grow one method at a time
    after the work folder of an earlier run is gone."""
    out = Path(out)
    if not out.is_file():
        return {}, {}
    earlier = json.loads(out.read_text())
    if earlier.get("data") != data:
        print(f"[methods_synthetic] {out}: made on other data ({earlier.get('data')}), its rows are not kept",
              flush=True)
        return {}, {}
    kept = {m: {**r, "run": r.get("run", earlier.get("command"))}
            for m, r in earlier.get("results", {}).items() if m not in results}
    return kept, earlier.get("shared", {})


def render_table(results, shared=None, baseline="cam"):
    """Markdown table of ``results`` ({method: row}); ``shared``: {"oc": seconds} of the shared OC."""
    head = ("| method | CAM mIoU | t | fg recall | contour F | C2AM-H | pseudo masks (train) | DeepLab val | + dCRF | "
            "s: priors | saliency | postprocess | segmentation | total |")
    lines = [head, "| --- |" + " ---: |" * (head.count("|") - 2)]
    fmt = lambda v: "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    for m, r in results.items():
        s = r["stages"]
        secs = [s.get(k, {}).get("seconds") for k in STAGES]
        total = sum(v for v in secs if v)
        cells = [r["cam_miou"], r["cam_threshold"], r["fg_recall"], r["contour_f"], r["saliency_miou"],
                 r["pseudo_miou"], r["seg_miou"], r["seg_crf_miou"]]
        cells = [fmt(float(c)) if isinstance(c, (int, float)) else fmt(c) for c in cells]
        lines.append(f"| {m} | " + " | ".join(cells + [fmt(None if v is None else int(round(v))) for v in secs]
                                               + [str(int(round(total)))]) + " |")
    if shared and shared.get("oc"):
        lines += ["", f"Shared by every method: the ordinary classifier (4 epochs; its backbone stands in for ImageNet "
                  f"weights for every method but P-OC / P-NOC, which erase against it), {shared['oc']['seconds']:.0f} s."]
    runs = {}
    for m, r in results.items():
        if r.get("run"):
            runs.setdefault(r["run"], []).append(m)
    for run, ms in runs.items():
        lines += ["", f"Kept from an earlier run (its work folder was not available to this one): {', '.join(ms)}, "
                  f"made by `{run}`."]
    if baseline in results:
        b = results[baseline]["cam_miou"]
        lines += ["", f"CAM mIoU against vanilla CAM ({b:.2f}): "
                  + ", ".join(f"{m} {r['cam_miou'] - b:+.2f}" for m, r in results.items() if m != baseline)]
    return "\n".join(lines) + "\n"


COLORS = [(200, 120, 40), (60, 160, 230), (70, 180, 90), (40, 90, 200), (160, 80, 170)]  # BGR


def draw_figure(results, path):
    """Two panels: mIoU per stage (grouped bars) and seconds per stage (stacked bars), one group per method."""
    metrics = [("CAM (val)", "cam_miou"), ("pseudo (train)", "pseudo_miou"), ("DeepLab (val)", "seg_miou"),
               ("DeepLab+CRF (val)", "seg_crf_miou")]
    stages = STAGES
    methods = list(results)
    w_group = 30 * len(metrics) + 30
    h, top, left = 360, 50, 50
    width = max(400, left + w_group * len(methods) + 20)
    panel = np.full((h, width * 2 + 20, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX

    def axes(x0, title, ymax, unit):
        cv2.putText(panel, title, (x0 + left, 25), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        base = h - 70
        for k in range(5):
            v = ymax * k / 4
            y = int(base - (base - top) * k / 4)
            cv2.line(panel, (x0 + left, y), (x0 + width - 10, y), (225, 225, 225), 1)
            cv2.putText(panel, f"{v:.0f}{unit}", (x0 + 2, y + 4), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        return base

    base = axes(0, "mIoU (%) per stage", 80, "")
    for i, m in enumerate(methods):
        gx = left + i * w_group + 15
        for j, (_, key) in enumerate(metrics):
            v = results[m][key] or 0.0
            y = int(base - (base - top) * min(v, 80) / 80)
            cv2.rectangle(panel, (gx + 30 * j, y), (gx + 30 * j + 24, base), COLORS[j], -1)
            cv2.putText(panel, f"{v:.0f}", (gx + 30 * j + 2, y - 3), font, 0.32, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(panel, m, (gx, base + 18), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for j, (label, _) in enumerate(metrics):
        lx, ly = left + 150 * (j % 2), h - 34 + 14 * (j // 2)
        cv2.rectangle(panel, (lx, ly), (lx + 10, ly + 8), COLORS[j], -1)
        cv2.putText(panel, label, (lx + 14, ly + 8), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    x0 = width + 20
    totals = [sum(results[m]["stages"].get(s, {}).get("seconds", 0) for s in stages) for m in methods]
    ymax = max(60.0, float(np.ceil(max(totals + [1]) / 300.0) * 300))
    base = axes(x0, "wall seconds per stage", ymax, "")
    for i, m in enumerate(methods):
        gx = x0 + left + i * w_group + 15
        y_prev = base
        for j, s in enumerate(stages):
            v = results[m]["stages"].get(s, {}).get("seconds", 0)
            y = int(y_prev - (base - top) * v / ymax)
            if v:
                cv2.rectangle(panel, (gx, y), (gx + 60, y_prev), COLORS[j % len(COLORS)], -1)
            y_prev = y
        cv2.putText(panel, f"{totals[i]:.0f}", (gx + 10, y_prev - 3), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(panel, m, (gx, base + 18), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for j, s in enumerate(stages):
        lx = x0 + left + 95 * (j % 3)
        ly = h - 34 + 14 * (j // 3)
        cv2.rectangle(panel, (lx, ly), (lx + 10, ly + 8), COLORS[j % len(COLORS)], -1)
        cv2.putText(panel, s, (lx + 14, ly + 8), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    with atomic_path(path) as tmp:  # tmp ends with .png, so cv2 picks the format
        if not cv2.imwrite(str(tmp), panel):
            raise OSError(f"could not write {path}")


def main(argv=None):
    args = parse_args(argv)
    available = available_methods()
    chosen = args.methods.split(",") if args.methods else [m for m, c in available.items() if c]
    for m in chosen:
        if m not in available:
            raise ConfigError(f"unknown method {m!r}", fix=f"use registered ones: {', '.join(available)}")
        if available[m] is None:
            raise ConfigError(f"method {m!r} has no synthetic config", path=ROOT / "configs/synthetic" / f"{m}.yaml",
                              fix="add configs/synthetic/<name>.yaml for it")
    py = sys.executable
    env0 = {**os.environ, "DATASET": "synthetic", "DATA_ROOT": str(Path(args.data).resolve()), "GPUS": "0",
            "PYTHON": py, "WSSS_VENV": os.environ.get("WSSS_VENV", sys.prefix)}
    env0.pop("OVERRIDES", None)
    if args.overrides:
        env0["OVERRIDES"] = args.overrides
    for m in chosen:
        print(f"[methods_synthetic] === {m}", flush=True)
        run_method(m, available[m], args, env0)
    gt_cache, results = {}, {}
    work = Path(args.work).resolve()
    for m, config in available.items():  # every finished method of the work folder, in registry order
        if config and (work / m / "stages" / "segmentation.json").is_file():
            results[m] = collect(m, args, gt_cache)
    out = Path(args.out)
    data = json.loads((Path(args.data) / "meta.json").read_text())["config"]
    kept, shared = keep_earlier_rows(out, results, data)
    results = {**results, **kept}
    order = ["cam"] + [m for m in available if m != "cam"]
    results = {m: results[m] for m in order if m in results}
    if (work / "oc/stages/oc.json").is_file():
        shared = {"oc": stage_seconds(work / "oc" / "stages" / "oc.json")}
    record = run_record()
    write_json(out, {"benchmark": "methods_synthetic", "definitions": DEFINITIONS,
                     "data": data, "shared": shared, "results": results, **record})
    md = ["# Every CAM method through the whole pipeline (synthetic benchmark)", "",
          f"Command: `{record['command']}`", "", render_table(results, shared),
          f"![methods side by side]({out.with_suffix('.png').name})", ""]
    write_text(out.with_suffix(".md"), "\n".join(md))
    draw_figure(results, out.with_suffix(".png"))
    for m, r in results.items():
        print(f"[methods_synthetic] {m}: CAM {r['cam_miou']:.2f}, pseudo {r['pseudo_miou']:.2f}, "
              f"seg {r['seg_miou']:.2f} (+CRF {r['seg_crf_miou']:.2f})")
    print(f"-> {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    run_main(main)
