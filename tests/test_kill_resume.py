"""Kill-and-resume: each stage tool SIGKILLed at seeded random moments while it works, then run to
the end, gives the outputs of an uninterrupted run and leaves no temporary file."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wsss.data.io import load_cam
from wsss.data.synthetic import generate
from wsss.engine import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
data: {{dataset: synthetic, root: "{root}", train_split: train}}
model: {{backbone: resnet18, output_stride: 16, norm_mode: train, weights: null, backbone_kwargs: {{width: 8}}}}
method: {{name: cam}}
augment: {{resize_long: null, hflip: true, crop: 64}}
train: {{epochs: 2, batch_size: 2, num_workers: 0, channels_last: false, device: cpu, log_every: 1,
         checkpoint_every: 1}}
infer: {{scales: [1.0, 2.0], flip: true, batch_size: 1, num_workers: 0}}
"""


def start(argv, env):
    return subprocess.Popen([sys.executable, str(ROOT / "tools" / argv[0]), *argv[1:]], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(argv, env):
    proc = start(argv, env)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]


def kill_at_random(argv, env, started, rng, kills=2):
    """Start the tool ``kills`` times, SIGKILL it a random moment after ``started()`` says it is
    working; returns how many runs were killed while still running."""
    killed = 0
    for _ in range(kills):
        proc = start(argv, env)
        deadline = time.time() + 120
        while proc.poll() is None and not started() and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.communicate(timeout=60)
    return killed


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("kill")
    generate(base / "data", seed=5, n_train=16, n_val=8, size=64, progress=False)
    (base / "cam.yaml").write_text(CONFIG.format(root=base / "data"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    exp = base / "exp"
    finish(["train_cam.py", "--config", str(base / "cam.yaml"), "--exp", str(exp)], env)
    finish(["infer_cam.py", "--exp", str(exp), "--split", "train", "--out", str(base / "cams")], env)
    return base, env


def files(folder, pattern):
    return sorted(Path(folder).glob(pattern))


def no_temporary_files(folder):
    left = [p for p in Path(folder).rglob(".*") if ".tmp" in p.name]
    assert not left, left


def same_cams(a, b):
    fa, fb = files(a, "*.npz"), files(b, "*.npz")
    assert [p.name for p in fa] == [p.name for p in fb] and fa
    for x, y in zip(fa, fb):
        cx, cy = load_cam(x), load_cam(y)
        assert cx.keys() == cy.keys() and all(np.array_equal(cx[k], cy[k]) for k in cx), x.name


def same_pngs(a, b):
    fa, fb = files(a, "*.png"), files(b, "*.png")
    assert [p.name for p in fa] == [p.name for p in fb] and fa
    for x, y in zip(fa, fb):
        assert np.array_equal(np.asarray(Image.open(x)), np.asarray(Image.open(y))), x.name


def stage_args(stage, base, out):
    """argv of ``stage`` writing to ``out``, a predicate 'it is working', the comparison."""
    data, exp, cams = base / "data", base / "exp", base / "cams"
    if stage == "train_cam":
        argv = ["train_cam.py", "--config", str(base / "cam.yaml"), "--exp", str(out)]

        def same(a, b):
            wa, wb = load_checkpoint(a / "checkpoints/last.pth"), load_checkpoint(b / "checkpoints/last.pth")
            assert wa["step"] == wb["step"] == 16 and wa["partial"] is None
            assert all(torch.equal(wa["state_dict"][k], wb["state_dict"][k]) for k in wa["state_dict"])
        return argv, lambda: (out / "metrics.jsonl").is_file(), same
    if stage == "infer_cam":
        argv = ["infer_cam.py", "--exp", str(exp), "--split", "val", "--out", str(out)]
        return argv, lambda: bool(files(out, "*.npz")), same_cams
    if stage == "make_pseudo_masks":
        argv = ["make_pseudo_masks.py", "--data", str(data), "--split", "train", "--scores", str(cams),
                "--threshold", "0.3", "--out", str(out)]
        return argv, lambda: bool(files(out, "*.png")), same_pngs
    if stage == "evaluate":
        argv = ["evaluate.py", "--data", str(data), "--split", "train", "--pred", str(cams), "--mode", "cam",
                "--workers", "1", "--out", str(out / "eval.json")]

        def same(a, b):
            ra, rb = json.loads((a / "eval.json").read_text()), json.loads((b / "eval.json").read_text())
            drop = ("seconds", "config")
            assert {k: v for k, v in ra.items() if k not in drop} == {k: v for k, v in rb.items() if k not in drop}
        return argv, lambda: out.is_dir(), same
    raise ValueError(stage)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["train_cam", "infer_cam", "make_pseudo_masks", "evaluate"])
def test_killed_stage_resumes_to_the_uninterrupted_outputs(stage, world, tmp_path):
    base, env = world
    rng = random.Random(f"kill-{stage}")
    full, cut = tmp_path / "full", tmp_path / "cut"
    argv_full, _, same = stage_args(stage, base, full)
    finish(argv_full, env)
    argv, working, _ = stage_args(stage, base, cut)
    killed = kill_at_random(argv, env, working, rng)
    finish(argv, env)
    same(full, cut)
    no_temporary_files(cut)  # save_checkpoint and the per-image tools remove what a kill left
    if stage == "train_cam":
        assert killed >= 1  # training is long enough to be cut at least once
