"""ICAM through the runners on a tiny synthetic set: runner 1 trains it (tools/train_cam.py
--method icam), infers CAM files that store the background (1 - sum of the classes) and scores
them under both protocols, with the contour F-score next to each mIoU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wsss.data.io import load_cam
from wsss.data.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
TINY = "train.epochs=1 train.batch_size=8 train.num_workers=0 infer.scales=[1.0] infer.num_workers=0"


@pytest.fixture(scope="module")
def priors(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("icam_runner")
    data = tmp / "data"
    generate(data, seed=0, n_train=24, n_val=6, size=64, workers=1, progress=False)
    env = {**os.environ, "PYTHON": sys.executable, "METHOD": "icam", "DATA_ROOT": str(data),
           "EXP_ROOT": str(tmp / "exp"), "OMP_NUM_THREADS": "1", "OVERRIDES": TINY}
    env.pop("WSSS_VENV", None)
    run = subprocess.run(["bash", "runners/1-priors.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return tmp, data, env, run.stdout


@pytest.mark.slow
def test_runner_1_trains_infers_and_scores_icam_both_ways(priors):
    tmp, _, _, stdout = priors
    exp = tmp / "exp" / "synthetic_icam"
    cfg = (exp / "config.yaml").read_text()
    assert "name: icam" in cfg and "fs_weight: 0.5" in cfg
    cam = load_cam(next((exp / "cams" / "val").glob("*.npz")))
    np.testing.assert_allclose(cam["hr_cam_bg"], 1 - cam["hr_cam"].sum(0), atol=2e-3)  # fp16 files
    assert ((cam["hr_cam"] > 0).sum(0) <= 1).all() or (cam["hr_cam"].max(0) == 0).any()  # one class per pixel
    for split in ("train", "val"):
        stored = json.loads((exp / f"eval_cam_{split}.json").read_text())
        swept = json.loads((exp / f"eval_cam_{split}_sweep.json").read_text())
        assert stored["protocol"] == "stored-background" and "threshold" not in stored
        assert swept["protocol"] == "sweep" and 0 < swept["threshold"] < 1
        assert stored["contour_f"]["definition"] == swept["contour_f"]["definition"] == "icam"
        rows = [line.split() for line in stdout.splitlines() if line.startswith("synthetic_icam ")]
        assert ["synthetic_icam", split, "stored-background", f"{stored['miou']:.2f}", "-",
                f"{stored['contour_f']['mean_f']:.2f}"] in rows
        assert ["synthetic_icam", split, "sweep", f"{swept['miou']:.2f}", f"{swept['threshold']:.2f}",
                f"{swept['contour_f']['mean_f']:.2f}"] in rows
