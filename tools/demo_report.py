"""Collect the demo pipeline's evaluations into ``report.md`` and ``summary.json``.

    python tools/demo_report.py --demo experiments/demo --data data/synthetic \
        --times experiments/demo/stage_seconds.txt

Reads the JSON files that ``runners/1-priors.sh`` .. ``4-segmentation.sh`` write under the demo
folder (the stage folder names those runners use with ``DATASET=synthetic METHOD=pnoc``) and
the panels of ``tools/visualize.py``; a missing evaluation is a clear error naming the stage to
rerun.
"""

import argparse
import json
from pathlib import Path

from wsss.cli import run_main
from wsss.data.io import write_json, write_text
from wsss.errors import DataError

#: summary key -> (stage folder, evaluation file, split, what it measures, runner; None = optional row,
#: e.g. PoolNet, which runners/demo.sh skips)
ROWS = {
    "cam": [("synthetic_pnoc", "eval_cam_train.json", "train", "CAMs (P-NOC, best threshold)", "1-priors"),
            ("synthetic_pnoc", "eval_cam_val.json", "val", "CAMs (P-NOC, best threshold)", "1-priors")],
    "saliency": [("synthetic_ccamh", "eval_saliency_val.json", "val", "saliency C2AM-H (fg/bg mIoU)", "2-saliency"),
                 ("synthetic_poolnet", "eval_saliency_val.json", "val", "saliency PoolNet (fg/bg mIoU)", None)],
    "walk": [("synthetic_rw", "eval_rwscores_train.json", "train", "random walk before the label CRF", None)],
    "pseudo": [("synthetic_rw", "eval_rw_train.json", "train", "pseudo masks (random walk + label CRF)", "3-rw")],
    "seg": [("synthetic_deeplabv3plus", "eval_raw_val.json", "val", "DeepLab v3+ (config scales + flip)", "4-segmentation")],
    "seg_crf": [("synthetic_deeplabv3plus", "eval_crf_val.json", "val", "DeepLab v3+ + dCRF", "4-segmentation")],
}

#: baselines: (stage folder, file, split, label)
BASELINES = [
    ("synthetic_pnoc", "baselines_train.json", "train"),
    ("synthetic_pnoc", "baselines_val.json", "val"),
]
SALIENCY_BASELINES = [
    ("synthetic_saliency_all-fg", "eval_saliency_val.json", "val", "all foreground"),
    ("synthetic_saliency_all-bg", "eval_saliency_val.json", "val", "all background"),
    ("synthetic_pnoc/cam_max", "eval_saliency_val.json", "val", "max CAM thresholded"),
]


def read_eval(path, runner):
    if not path.is_file():
        raise DataError("evaluation missing", path=path, fix=f"run runners/{runner}.sh (or runners/demo.sh)")
    return json.loads(path.read_text())


def read_times(path):
    times = {}
    if path and Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            name, secs = line.split()
            times[name] = int(secs)
    times["total"] = sum(times.values())
    return times


def collect(demo):
    """Figures of every stage: {key: {split: {"miou", "label", ...}}}."""
    out = {}
    for key, rows in ROWS.items():
        out[key] = {}
        for folder, name, split, label, runner in rows:
            if runner is None and not (demo / folder / name).is_file():
                continue
            r = read_eval(demo / folder / name, runner)
            entry = {"miou": r["miou"], "label": label}
            if r.get("threshold") is not None:
                entry["threshold"] = r["threshold"]
            sub = split if key != "saliency" else folder.split("_", 1)[1]
            out[key][sub] = entry
    base = {}
    for folder, name, split in BASELINES:
        r = read_eval(demo / folder / name, "1-priors")
        base[split] = {k: v["miou"] for k, v in r.items() if isinstance(v, dict) and "miou" in v}
    sal = {}
    for folder, name, split, label in SALIENCY_BASELINES:
        p = demo / folder / name
        if p.is_file():
            sal[label] = json.loads(p.read_text())["miou"]
    base["saliency_val"] = sal
    out["baselines"] = base
    return out


def checks(summary):
    """The demo's claims, each ``{"claim", "holds"}``: every stage above its trivial baselines, the
    pseudo masks above the CAMs, and DeepLab compared like for like, as in the published P-NOC
    chain (CAMs 63.3 -> pseudo masks 75.5 -> DeepLab 73.8, the last two with dCRF): DeepLab + dCRF
    at least 5 points above the CAMs and within 2 of its pseudo masks (walk + label CRF), and,
    when the walk was scored before its CRF, DeepLab without CRF within 2 of that walk."""
    base, cam = summary["baselines"], summary["cam"]
    seg, seg_crf = summary["seg"]["val"]["miou"], summary["seg_crf"]["val"]["miou"]
    pseudo = summary["pseudo"]["train"]["miou"]
    trivial_val = max(base["val"].values())
    out = [("CAMs (val) above the trivial baselines", cam["val"]["miou"] > trivial_val),
           ("pseudo masks above the CAMs (train)", pseudo > cam["train"]["miou"]),
           ("DeepLab (val) above the trivial baselines", seg > trivial_val),
           ("DeepLab + dCRF (val) at least 5 points above the CAMs (val)", seg_crf >= cam["val"]["miou"] + 5),
           ("DeepLab + dCRF (val) within 2 points of its pseudo masks (train, walk + label CRF), or above",
            seg_crf >= pseudo - 2)]
    walk = (summary.get("walk") or {}).get("train")
    if walk:
        out.append(("DeepLab without CRF (val) within 2 points of the walk before its CRF (train), or above",
                    seg >= walk["miou"] - 2))
    sal = base.get("saliency_val") or {}
    if sal and "ccamh" in summary["saliency"]:
        out.insert(1, ("saliency above its trivial baselines", summary["saliency"]["ccamh"]["miou"] > max(sal.values())))
    return [{"claim": c, "holds": bool(h)} for c, h in out]


def render(summary, demo):
    lines = ["# wsss demo: the whole pipeline on the synthetic benchmark", "",
             "All numbers are mIoU in percent (background included) against the ground truth.",
             "CAM thresholds are tuned on the ground truth of the split they are reported on",
             "(the usual protocol for priors), and so is the background threshold of the random",
             "walk (the sweep of runners/3-rw.sh on the training split); saliency is binary fg/bg",
             "mIoU; pseudo masks are scored on the training split they were made for; segmentation",
             "on val. DeepLab is compared like for like: with dCRF against the pseudo masks (walk +",
             "label CRF), as P-NOC's published chain is; without CRF against the walk before its CRF.", "",
             "| stage | split | mIoU | note |", "| --- | --- | ---: | --- |"]
    for key in ROWS:
        for split, e in summary[key].items():
            note = f"threshold {e['threshold']:.2f}" if "threshold" in e else ""
            lines.append(f"| {e['label']} | {split if key != 'saliency' else 'val'} | {e['miou']:.2f} | {note} |")
    lines += ["", "Trivial baselines:", "", "| baseline | split | mIoU |", "| --- | --- | ---: |"]
    for split in ("train", "val"):
        for name, v in summary["baselines"].get(split, {}).items():
            lines.append(f"| {name} | {split} | {v:.2f} |")
    for name, v in summary["baselines"].get("saliency_val", {}).items():
        lines.append(f"| saliency: {name} | val | {v:.2f} |")
    lines += ["", "Claims:", ""]
    lines += [f"- {'yes' if c['holds'] else '**NO**'}: {c['claim']}" for c in summary["checks"]]
    lines += ["", "Wall time per stage (seconds):", "", "| stage | seconds |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in summary["seconds"].items()]
    panels = sorted((demo / "panels").glob("*.png"))
    if panels:
        lines += ["", "Pictures (image, ground truth, CAM, pseudo mask, DeepLab prediction):", ""]
        lines += [f"![{p.stem}](panels/{p.name})" for p in panels]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", required=True, help="the demo folder (runners/demo.sh's EXP_ROOT)")
    ap.add_argument("--data", required=True, help="dataset root (recorded in the summary)")
    ap.add_argument("--times", help="stage_seconds.txt written by runners/demo.sh")
    args = ap.parse_args()
    demo = Path(args.demo)
    summary = collect(demo)
    summary["seconds"] = read_times(args.times)
    summary["data"] = str(args.data)
    summary["checks"] = checks(summary)
    write_json(demo / "summary.json", summary)
    write_text(demo / "report.md", render(summary, demo))
    s = summary
    print(f"demo: CAM val {s['cam']['val']['miou']:.2f}, pseudo train {s['pseudo']['train']['miou']:.2f}, "
          f"seg val {s['seg']['val']['miou']:.2f} (+CRF {s['seg_crf']['val']['miou']:.2f}) "
          f"in {s['seconds']['total']} s; claims {sum(c['holds'] for c in s['checks'])}/{len(s['checks'])} hold "
          f"-> {demo / 'report.md'}")


if __name__ == "__main__":
    run_main(main)
