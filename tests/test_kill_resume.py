"""Kill-and-resume: each stage tool SIGKILLed at seeded random moments while it works, then run to
the end, gives the outputs of an uninterrupted run and leaves no temporary file.

Each stage is a builder in ``STAGES``: ``builder(world, out) -> Stage`` (its argv writing to
``out``, a predicate "it is working", the comparison of two outputs). The uninterrupted run of a
stage is made once per module (:meth:`World.output`) and serves both as the reference and as the
input of the stages after it (train_cam -> infer_cam -> make_pseudo_masks -> train_seg -> ...).
"""

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml
from hub_fakes import FakeDrive
from PIL import Image
from tiny_configs import tiny

from wsss.data.io import HOST, load_cam
from wsss.data.synthetic import generate
from wsss.engine import load_checkpoint
from wsss.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
ID = "1" + "K" * 32  # the hub's Drive file
# every training stage: checkpoints after each step, so that a kill lands mid-epoch
TRAIN = {"epochs": 1, "batch_size": 2, "num_workers": 0, "channels_last": False, "device": "cpu", "log_every": 1,
         "checkpoint_every": 1}


def start(argv, env):
    return subprocess.Popen([sys.executable, str(ROOT / "tools" / argv[0]), *argv[1:]], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(argv, env):
    proc = start(argv, env)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]


def kill_at_random(argv, env, started, rng, kills=2):
    """Start the tool ``kills`` times, SIGKILL it a random moment after ``started()`` says it is
    working; returns how many runs were killed while still running, and the ids of the (now dead)
    processes."""
    killed, pids = 0, []
    for _ in range(kills):
        proc = start(argv, env)
        pids.append(proc.pid)
        deadline = time.time() + 120
        while proc.poll() is None and not started() and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.communicate(timeout=60)
    return killed, pids


class World:
    """The tiny dataset (16 train / 8 val images, 64 px) and each stage's uninterrupted output."""

    def __init__(self, base):
        self.base, self.data = base, base / "data"
        generate(self.data, seed=5, n_train=16, n_val=8, size=64, progress=False)
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", NO_PROXY="127.0.0.1",
                        no_proxy="127.0.0.1")
        self.done, self.drive = set(), None

    def output(self, stage):
        """The folder of ``stage``'s uninterrupted run (made on first use)."""
        out = self.base / stage
        if stage not in self.done:
            finish(STAGES.get(stage)(self, out).argv, self.env)
            self.done.add(stage)
        return out

    def config(self, name, cfg, **train):
        """Write ``cfg`` with the tiny ``TRAIN`` settings (and ``train``) as ``<name>.yaml``."""
        cfg = {**cfg, "data": {**cfg.get("data", {}), "dataset": "synthetic", "root": str(self.data)},
               "train": {**cfg.get("train", {}), **TRAIN, **train}}
        path = self.base / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return str(path)

    def tiny(self, stage, name):
        """The tiny config ``tests/configs/<stage>/<name>.yaml`` on this world's inputs, written."""
        values = {"root": self.data, "oc_exp": self.base / "train_cam", "cams": self.base / "infer_cam",
                  "labels": self.base / "make_pseudo_masks"}
        return self.config(name, tiny(stage, name, values))

    def hub(self):
        """A registry of one pinned checkpoint (3 MiB: the tool writes 1 MiB chunks), served slowly (1 s)
        on the loopback: its path."""
        if self.drive is None:
            buf = io.BytesIO()
            torch.save({"w": torch.randn(800_000, generator=torch.Generator().manual_seed(0))}, buf)
            self.drive = FakeDrive().__enter__()
            self.drive.slow = 1.0
            self.drive.add(ID, buf.getvalue())
            (self.base / "registry.yaml").write_text(json.dumps({"artefacts": {"test/ckpt": {
                "seed": "test", "kind": "cam-net", "sources": [{"drive": ID}], "container": "file",
                "filename": "ckpt.pth", "status": "files", "sha256": hashlib.sha256(buf.getvalue()).hexdigest()}}}))
        return self.base / "registry.yaml"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("kill"))
    yield w
    if w.drive is not None:
        w.drive.__exit__(None, None, None)


@dataclass
class Stage:
    argv: list
    working: Callable[[], bool]
    same: Callable[[Path, Path], None]
    trains: bool = False  # long enough to be cut at least once
    output: str = "config.yaml"  # an output written atomically: a killed write of it is planted


def files(folder, pattern):
    return sorted(Path(folder).rglob(pattern))


def no_temporary_files(folder):
    left = [p for p in Path(folder).rglob(".*") if ".tmp" in p.name]
    assert not left, left


def same_cams(a, b):
    fa, fb = files(a, "*.npz"), files(b, "*.npz")
    assert [p.relative_to(a) for p in fa] == [p.relative_to(b) for p in fb] and fa
    for x, y in zip(fa, fb):
        cx, cy = load_cam(x), load_cam(y)
        assert cx.keys() == cy.keys() and all(np.array_equal(cx[k], cy[k]) for k in cx), x.name


def same_pngs(a, b):
    fa, fb = files(a, "*.png"), files(b, "*.png")
    assert [p.relative_to(a) for p in fa] == [p.relative_to(b) for p in fb] and fa
    for x, y in zip(fa, fb):
        assert np.array_equal(np.asarray(Image.open(x)), np.asarray(Image.open(y))), x.name


def same_weights(a, b):
    """Every checkpoint of experiment ``b`` (last, best) holds ``a``'s weights, bit for bit."""
    names = sorted(p.name for p in (a / "checkpoints").glob("*.pth"))
    assert names == sorted(p.name for p in (b / "checkpoints").glob("*.pth")) and "last.pth" in names
    for name in names:
        wa, wb = load_checkpoint(a / "checkpoints" / name), load_checkpoint(b / "checkpoints" / name)
        assert wa.get("step") == wb.get("step") and wa.get("partial") is None and wb.get("partial") is None
        sa, sb = wa["state_dict"], wb["state_dict"]
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), name


def training(argv, out):
    return Stage(argv, lambda: (out / "metrics.jsonl").is_file(), same_weights, trains=True)


def writing(pattern, argv, out, same):
    return Stage(argv, lambda: bool(files(out, pattern)), same)


STAGES = Registry("kill-and-resume stage")


@STAGES.register("train_cam")
def _train_cam(w, out):
    cfg = {"model": {"backbone": "resnet18", "output_stride": 16, "norm_mode": "train", "weights": None,
                     "backbone_kwargs": {"width": 8}},
           "method": {"name": "cam"}, "augment": {"resize_long": None, "hflip": True, "crop": 64},
           "infer": {"scales": [1.0, 2.0], "flip": True, "batch_size": 1, "num_workers": 0}}
    return training(["train_cam.py", "--config", w.config("cam", cfg, epochs=2), "--exp", str(out)], out)


@STAGES.register("train_cam_pnoc")
def _train_pnoc(w, out):
    w.output("train_cam")  # the ordinary classifier (method.oc_exp)
    return training(["train_cam.py", "--config", w.tiny("methods", "pnoc"), "--exp", str(out)], out)


@STAGES.register("infer_cam")
def _infer_cam(w, out):
    argv = ["infer_cam.py", "--exp", str(w.output("train_cam")), "--split", "train", "--out", str(out)]
    return writing("*.npz", argv, out, same_cams)


@STAGES.register("make_pseudo_masks")
def _make_pseudo_masks(w, out):
    argv = ["make_pseudo_masks.py", "--data", str(w.data), "--split", "train", "--scores",
            str(w.output("infer_cam")), "--threshold", "0.3", "--out", str(out)]
    return writing("*.png", argv, out, same_pngs)


@STAGES.register("evaluate")
def _evaluate(w, out):
    argv = ["evaluate.py", "--data", str(w.data), "--split", "train", "--pred", str(w.output("infer_cam")),
            "--mode", "cam", "--workers", "1", "--out", str(out / "eval.json")]

    def same(a, b):
        ra, rb = json.loads((a / "eval.json").read_text()), json.loads((b / "eval.json").read_text())
        drop = ("seconds", "config")
        assert {k: v for k, v in ra.items() if k not in drop} == {k: v for k, v in rb.items() if k not in drop}
    return Stage(argv, out.is_dir, same, output="eval.json")


@STAGES.register("train_saliency")
def _train_saliency(w, out):
    w.output("infer_cam")  # the hints of C2AM-H
    argv = ["train_saliency.py", "--method", "ccam", "--config", w.tiny("saliency", "ccam"), "--exp", str(out)]
    return training(argv, out)


@STAGES.register("infer_saliency")
def _infer_saliency(w, out):
    argv = ["infer_saliency.py", "--exp", str(w.output("train_saliency")), "--split", "train", "--out", str(out),
            "--device", "cpu", "infer.scales=[1.0]"]
    return writing("*.png", argv, out, same_pngs)


@STAGES.register("make_affinity_labels")
def _make_affinity_labels(w, out):
    argv = ["make_affinity_labels.py", "--config", str(ROOT / "configs/synthetic/affinity.yaml"), "--data",
            str(w.data), "--split", "train", "--cams", str(w.output("infer_cam")), "--out", str(out)]
    return writing("*.png", argv, out, same_pngs)


@STAGES.register("train_affinity")
def _train_affinity(w, out):
    labels = w.output("make_affinity_labels")
    cfg = yaml.safe_load(Path(w.tiny("affinity", "irn")).read_text())
    cfg["infer"] = {"pad_size": 64, "batch_size": 2, "num_workers": 0, "bg_threshold": 0.3, "logt": 2}
    argv = ["train_affinity.py", "--config", w.config("irn-rw", cfg), "--labels", str(labels), "--exp", str(out)]
    return training(argv, out)


@STAGES.register("infer_rw")
def _infer_rw(w, out):
    argv = ["infer_rw.py", "--exp", str(w.output("train_affinity")), "--split", "train", "--cams",
            str(w.output("infer_cam")), "--out", str(out)]
    return writing("*.png", argv, out, same_pngs)


@STAGES.register("train_seg")
def _train_seg(w, out):
    argv = ["train_seg.py", "--config", w.tiny("segmentation", "deeplab"), "--masks",
            str(w.output("make_pseudo_masks")), "--exp", str(out)]  # selection on held-out pseudo masks
    return training(argv, out)


@STAGES.register("infer_seg")
def _infer_seg(w, out):
    argv = ["infer_seg.py", "--exp", str(w.output("train_seg")), "--split", "val", "--scales", "1.0",
            "--crf", "deeplab", "--out", str(out), "--device", "cpu", "infer.num_workers=0"]
    return Stage(argv, lambda: bool(files(out, "*.png")), same_pngs, output="infer_seg.yaml")


@STAGES.register("download")
def _download(w, out):
    argv = ["download.py", "test/ckpt", "--registry", str(w.hub()), "--cache", str(out), "--drive-url", w.drive.url,
            "--no-gdown"]

    def same(a, b):  # the file the registry pins, checked by the tool; no .part left
        assert (b / "test/ckpt/ckpt.pth").read_bytes() == (a / "test/ckpt/ckpt.pth").read_bytes() == w.drive.files[ID]
        assert not files(b, "*.part")
        assert any(rng for _, _, rng in w.drive.requests)  # a killed transfer was continued (Range), not redone
    def working():  # a chunk is on disk
        try:
            return any(p.stat().st_size for p in files(out, "*.part"))
        except FileNotFoundError:  # renamed meanwhile: finished
            return True
    return Stage(argv, working, same, output="pins.json")


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES.names())
def test_killed_stage_resumes_to_the_uninterrupted_outputs(stage, world, tmp_path):
    rng = random.Random(f"kill-{stage}")
    full, cut = world.output(stage), tmp_path / "cut"
    run = STAGES.get(stage)(world, cut)
    killed, pids = kill_at_random(run.argv, world.env, run.working, rng)
    # a write the kill cut, for sure: what a writer that died mid-write leaves
    output = cut / run.output
    planted = output.with_name(f".{output.name}.{HOST}-{pids[-1]}.abcd1234.tmp{output.suffix}")
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_bytes(b"cut")
    finish(run.argv, world.env)
    run.same(full, cut)
    no_temporary_files(cut)  # save_checkpoint and the per-image tools remove what a kill left
    if run.trains:
        assert killed >= 1
