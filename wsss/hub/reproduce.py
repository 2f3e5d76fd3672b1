"""Re-measuring a published table from the released artefacts (``tools/reproduce.py``).

Each row of ``tables.yaml`` names a stage (registry :data:`STAGES`) that turns the row into a
:class:`Plan`: what to download, which artefact to convert into an experiment folder, and the
toolkit commands to run (``tools/infer_cam.py``, ``infer_saliency.py``, ``infer_rw.py``,
``infer_seg.py``, then ``tools/evaluate.py --out <row>/eval.json``). The protocol is the
published one: CAMs and saliency on the training split with the best background threshold of
the sweep (``--mode cam`` / ``saliency``; a method config's ``infer.thresholds`` replaces the
toolkit's range, e.g. CPN's 0.20-0.59 on its halved maps), pseudo masks on train and segmentation
on val as index PNGs (dCRF as the configs say), VOC test as PNGs for the evaluation server; a
table with ``contour: true`` (ICAM's) also scores the contour F-score. CAM files that store their
method's background (ICAM) are scored against it, as that method's protocol. Rows whose
network has no wsss module (``module pending``) or whose computation differs (``does not
reproduce``) are not run; the table says so.
"""

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..config import load_config
from ..registry import Registry
from . import REPO_ROOT
from .archive import prediction_dir
from .convert import experiment_config

STAGES = Registry("reproduce stage")
TOOLS = REPO_ROOT / "tools"
SKIP = {"module pending": "not run: no wsss module for this network yet, so it does not reproduce yet",
        "does not reproduce": "not run: the weights load, but the wsss network computes differently "
                              "(does not reproduce yet; see the registry note)"}


@dataclass
class Plan:
    """What one row needs: ``downloads`` (artefacts), ``convert`` (artefact -> experiment folder),
    ``commands`` (argument lists, or callables returning one once the downloads exist), ``result`` (the evaluation JSON), ``outputs`` (folders later
    rows use), ``skip`` (why the row is not run), ``note``."""

    downloads: list = field(default_factory=list)
    convert: tuple = None
    commands: list = field(default_factory=list)
    result: Path = None
    outputs: dict = field(default_factory=dict)
    skip: str = None
    note: str = ""


@dataclass
class Context:
    """Where a table run reads and writes."""

    data: Path
    out: Path
    exp_root: Path
    cache: Path
    python: str = sys.executable
    workers: int = 4
    overrides: tuple = ()
    contour: bool = False  # also score the contour F-score (tables with ``contour: true``)
    done: dict = field(default_factory=dict)  # row id -> Plan (for rows that reuse outputs)

    def tool(self, name, *args):
        return [self.python, str(TOOLS / f"{name}.py"), *map(str, args)]

    def evaluate(self, split, pred, mode, result, thresholds=None):
        sweep = ("--thresholds", thresholds) if thresholds else ()
        return self.tool("evaluate", "--data", self.data, "--split", split, "--pred", pred, "--mode", mode,
                         *sweep, *(() if self.contour else ("--no-contour",)), "--workers", self.workers,
                         "--out", result)

    def experiment(self, art):
        return self.exp_root / art.name


def row_dir(ctx, row):
    return ctx.out / "rows" / row["id"]


def _converted(ctx, art, row):
    exp = ctx.experiment(art)
    return Plan(downloads=[art], convert=(art, exp), result=row_dir(ctx, row) / "eval.json")


@STAGES.register("cam")
def _cam(ctx, row, art):
    plan = _converted(ctx, art, row)
    cams = row_dir(ctx, row) / "cams"
    own = (experiment_config(art).get("infer") or {}).get("thresholds")  # the method's own sweep (CPN)
    plan.commands = [ctx.tool("infer_cam", "--exp", plan.convert[1], "--split", row["split"], "--data", ctx.data,
                              "--out", cams, *ctx.overrides),
                     ctx.evaluate(row["split"], cams, "cam", plan.result, own)]
    plan.outputs["cams"] = cams
    return plan


@STAGES.register("saliency")
def _saliency(ctx, row, art):
    plan = _converted(ctx, art, row)
    sal = row_dir(ctx, row) / "saliency"
    plan.commands = [ctx.tool("infer_saliency", "--exp", plan.convert[1], "--split", row["split"], "--data",
                              ctx.data, "--out", sal, *ctx.overrides),
                     ctx.evaluate(row["split"], sal, "saliency", plan.result)]
    return plan


@STAGES.register("rw")
def _rw(ctx, row, art):
    plan = _converted(ctx, art, row)
    source = ctx.done.get(row.get("cams"))
    cams = source.outputs.get("cams") if source else None
    if cams is None:
        return Plan(skip=f"not run: needs the CAMs of row {row.get('cams')!r}, which was not run")
    masks = row_dir(ctx, row) / "masks"
    plan.commands = [ctx.tool("infer_rw", "--exp", plan.convert[1], "--split", row["split"], "--data", ctx.data,
                              "--cams", cams, "--out", masks, "--workers", ctx.workers, *ctx.overrides),
                     ctx.evaluate(row["split"], masks, "png", plan.result)]
    return plan


def _seg_commands(ctx, row, art, plan):
    pred = row_dir(ctx, row) / "pred"
    spec = ((experiment_config(art).get("infer") or {}).get("crf"))
    preset = spec if isinstance(spec, str) else (spec or {}).get("preset", "irn") if spec else None
    plan.commands = [ctx.tool("infer_seg", "--exp", plan.convert[1], "--split", row["split"], "--data", ctx.data,
                              "--out", pred, "--workers", ctx.workers,
                              *(("--crf", "config") if preset else ()), *ctx.overrides)]
    return pred / (f"crf_{preset}" if preset else "raw")


@STAGES.register("seg")
def _seg(ctx, row, art):
    plan = _converted(ctx, art, row)
    pngs = _seg_commands(ctx, row, art, plan)
    plan.commands.append(ctx.evaluate(row["split"], pngs, "png", plan.result))
    return plan


@STAGES.register("seg-test")
def _seg_test(ctx, row, art):
    plan = _converted(ctx, art, row)
    pngs = _seg_commands(ctx, row, art, plan)
    plan.result = None
    plan.note = (f"PNGs for the evaluation server in {pngs} (upload them as "
                 "results/VOC2012/Segmentation/comp6_test_cls/<id>.png)")
    return plan


def _files(mode, suffixes):
    def stage(ctx, row, art):
        plan = Plan(downloads=[art], result=row_dir(ctx, row) / "eval.json")
        # the folder inside the unpacked archive is known only after the download
        plan.commands = [lambda: ctx.evaluate(row["split"], prediction_dir(art.cache_path(ctx.cache), suffixes), mode,
                                              plan.result)]
        return plan

    return stage


STAGES.register("cam-files")(_files("cam", (".npy", ".npz")))
STAGES.register("saliency-files")(_files("saliency", (".png",)))
STAGES.register("masks")(_files("png", (".png",)))


def plan_row(ctx, row, art):
    """The :class:`Plan` of one table row."""
    if art.status in SKIP:
        return Plan(skip=SKIP[art.status] + (f" ({art.note.strip()})" if art.note else ""))
    plan = STAGES.get(row["stage"])(ctx, row, art)
    ctx.done[row["id"]] = plan
    return plan


def describe(plan, ctx):
    """Lines saying what a plan downloads, converts and runs (``--dry-run``)."""
    if plan.skip:
        return [f"    {plan.skip}"]
    lines = []
    for art in plan.downloads:
        where = art.cache_path(ctx.cache)
        state = "cached" if where.exists() else "to download from " + " | ".join(s.describe() for s in art.sources)
        lines.append(f"    download {art.name}: {state} -> {where}")
    if plan.convert:
        art, exp = plan.convert
        lines.append(f"    convert  {art.name} ({art.converter}) -> {exp}")
    for cmd in plan.commands:
        shown = cmd() if callable(cmd) else cmd
        lines.append("    run      " + " ".join(shlex.quote(c) for c in shown))
    if plan.note:
        lines.append(f"    note     {plan.note}")
    return lines


def run_command(cmd, log):
    """Run a tool (output shown live, its last lines kept); raises ``RuntimeError`` on failure."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)}
    log(" ".join(shlex.quote(c) for c in cmd))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
    tail = []
    for line in proc.stdout:
        sys.stdout.write(line)
        tail = (tail + [line.rstrip()])[-5:]
    if proc.wait() != 0:
        last = next((t for t in reversed(tail) if t.strip()), "")
        raise RuntimeError(f"{Path(cmd[1]).name} failed (exit {proc.returncode}): {last[:300]}")


def default_data_root(table):
    """The dataset root the table's configs name (``data.root`` of configs/<dataset>/cam.yaml)."""
    cfg = load_config(REPO_ROOT / "configs" / table["dataset"] / "cam.yaml")
    return Path((cfg.get("data") or {}).get("root") or "data")
