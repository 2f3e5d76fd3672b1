"""End to end on a tiny synthetic set: runners/1-priors.sh METHOD=spcam (first CAM -> runner 2's
saliency -> association network -> SP-CAM -> CAMs with a stored background -> scores), then
runners/3-rw.sh (pseudo masks straight from the CAMs) and runners/4-segmentation.sh."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wsss.data.io import find_cam, load_cam

ROOT = Path(__file__).resolve().parents[1]


def run(script, env, timeout=1800):
    r = subprocess.run(["bash", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return r.stdout


@pytest.mark.slow
def test_spcam_runner_chain(tmp_path):
    venv = Path(sys.prefix)
    if not (venv / ".wsss-installed").is_file():
        pytest.skip("not running inside the runners/0-setup.sh virtualenv")
    tiny = "train.epochs=1 train.batch_size=8 train.num_workers=0"
    small = "model.backbone_kwargs.width=8"  # every network that inits from the first CAM's backbone
    env = dict(os.environ, WSSS_VENV=str(venv), DATASET="synthetic", DATA_ROOT=str(tmp_path / "data"),
               EXP_ROOT=str(tmp_path / "exp"), METHOD="spcam", EVAL_SPLITS="val", WORKERS="1",
               OVERRIDES=f"{tiny} {small} infer.scales=[1.0] augment.crop=64 augment.resize_long=[56,72]",
               SAL_OVERRIDES=f"{tiny} {small} infer.scales=[1.0] augment.resize_square=72 augment.crop=64",
               SP_OVERRIDES=f"{tiny} augment.crop=64 augment.resize_long=[56,72]")
    subprocess.run([sys.executable, "tools/make_synthetic.py", "--out", str(tmp_path / "data"), "--train", "24",
                    "--val", "6", "--size", "64"], cwd=ROOT, check=True, capture_output=True)
    out = run("runners/1-priors.sh", env)
    exp = tmp_path / "exp"
    assert (exp / "synthetic_cam" / "checkpoints/last.pth").is_file()          # the first CAM
    assert len(list((exp / "synthetic_poolnet" / "saliency" / "train").glob("*.png"))) == 24  # runner 2
    sp_cfg = (exp / "synthetic_superpixel" / "config.yaml").read_text()
    assert "synthetic_poolnet/saliency/train" in sp_cfg and "synthetic_cam/cams/train" in sp_cfg
    spcam_cfg = (exp / "synthetic_spcam" / "config.yaml").read_text()
    assert "synthetic_superpixel" in spcam_cfg
    cam = load_cam(find_cam(exp / "synthetic_spcam" / "cams" / "val", "val_000000"))
    assert "hr_cam_bg" in cam and np.allclose(cam["hr_cam_bg"], 0.3, atol=1e-3)
    result = json.loads((exp / "synthetic_spcam" / "eval_cam_val.json").read_text())
    assert "threshold" not in result and 0 <= result["miou"] <= 100  # the stored background, no sweep
    assert "synthetic_spcam" in out and "-" in out.splitlines()[-3]

    run("runners/3-rw.sh", dict(env, EVAL_SPLITS="train"))  # its pseudo masks cover the training split
    pseudo = exp / "synthetic_rw" / "pseudo" / "train"
    assert len(list(pseudo.glob("*.png"))) == 24 and not (exp / "synthetic_rw" / "aff_labels").exists()
    env4 = dict(env, OVERRIDES=f"{tiny} {small} augment.crop=64", PANELS="1", MODEL="deeplabv3plus")
    run("runners/4-segmentation.sh", env4)
    assert json.loads((exp / "synthetic_deeplabv3plus" / "eval_raw_val.json").read_text())["miou"] >= 0
