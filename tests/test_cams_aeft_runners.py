"""AEFT through the runners on a tiny synthetic set: runners/1-priors.sh METHOD=aeft trains both
phases, infers with AEFT's inference and sweeps AEFT's threshold range (0.10-0.34)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wsss.data.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train.epochs=2", "method.switch_epoch=1", "train.batch_size=8", "method.warmup_batch_size=4",
        "method.hidden=32", "model.backbone_kwargs.width=8", "train.num_workers=0", "infer.num_workers=0",
        "infer.scales=[1.0,0.5]", "augment.resize_long=[56,72]", "augment.crop=64"]


@pytest.mark.slow
def test_priors_runner_trains_and_scores_aeft(tmp_path):
    data = tmp_path / "data"
    generate(data, seed=6, n_train=24, n_val=6, size=64, workers=1, progress=False)
    env = {**os.environ, "PYTHON": sys.executable, "DATA_ROOT": str(data), "EXP_ROOT": str(tmp_path / "exp"),
           "METHOD": "aeft", "OMP_NUM_THREADS": "1", "OVERRIDES": " ".join(TINY)}
    run = subprocess.run(["bash", "runners/1-priors.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    exp = tmp_path / "exp" / "synthetic_aeft"
    epochs = [json.loads(ln) for ln in (exp / "metrics.jsonl").read_text().splitlines() if '"epoch"' in ln]
    epochs = [r for r in epochs if r["kind"] == "epoch"]
    assert [r["step"] for r in epochs] == [6, 9]  # 24 images at batch 4, then at batch 8
    assert "repel" not in epochs[0] and "repel" in epochs[1]
    for split in ("train", "val"):
        result = json.loads((exp / f"eval_cam_{split}.json").read_text())
        assert [c["threshold"] for c in result["curve"]] == pytest.approx([t / 100 for t in range(10, 35)])
        assert len(list((exp / "cams" / split).glob("*.npz"))) == (24 if split == "train" else 6)
    assert "synthetic_aeft" in run.stdout
