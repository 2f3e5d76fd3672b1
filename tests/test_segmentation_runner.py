"""runners/4-segmentation.sh end to end on a tiny dataset: train, predict (raw + dCRF), score, draw."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_segmentation_train import TINY, pseudo_masks, write_shapes

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_runner_chains_the_stage(tmp_path):
    data = write_shapes(tmp_path / "shapes")
    masks = pseudo_masks(data, tmp_path / "pseudo")
    env = {**os.environ, "PYTHON": sys.executable, "DATA_ROOT": str(data), "MASKS": str(masks),
           "EXP_ROOT": str(tmp_path / "exp"), "PANELS": "2", "WORKERS": "1", "OMP_NUM_THREADS": "1",
           "OVERRIDES": " ".join(TINY + ["train.epochs=2", "infer.num_workers=0", "infer.scales=[1.0]"])}
    run = subprocess.run(["bash", "runners/4-segmentation.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    exp = tmp_path / "exp" / "synthetic_deeplabv3plus"
    assert (exp / "checkpoints" / "best.pth").is_file() and "pseudo masks only" in (exp / "report.md").read_text()
    raw, crf = (json.loads((exp / f"eval_{k}_val.json").read_text()) for k in ("raw", "crf"))
    assert raw["num_images"] == crf["num_images"] == 8 and raw["mode"] == "png"
    assert sorted(p.name for p in (exp / "pred" / "val").iterdir()) == ["crf_deeplab", "infer_seg.yaml", "raw"]
    assert len(list((exp / "panels" / "val").glob("*.png"))) == 2
    assert re.search(rf"eval_crf_val\s+val\s+{crf['miou']:.2f}", run.stdout)
    # without pseudo masks the runner stops with a clear message
    bad = subprocess.run(["bash", "runners/4-segmentation.sh"], cwd=ROOT, capture_output=True, text=True,
                         env={**env, "MASKS": str(tmp_path / "none")})
    assert bad.returncode == 2 and "run runners/3-rw.sh first" in bad.stderr
