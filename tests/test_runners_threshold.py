"""runners/common.sh ``save_best_threshold``: the best threshold of a sweep, or ``stored`` when the
evaluation swept nothing because the maps carry their method's own background (ICAM's walked CAMs)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("result, want", [({"miou": 43.4, "threshold": 0.45, "protocol": "sweep"}, "0.45"),
                                          ({"miou": 11.9, "protocol": "stored-background"}, "stored")])
def test_save_best_threshold(tmp_path, result, want):
    (tmp_path / "eval.json").write_text(json.dumps(result))
    script = "set -euo pipefail; GPUS=0 OVERRIDES= OVERWRITE=0; source runners/common.sh; save_best_threshold \"$1\" \"$2\""
    env = {"PATH": os.environ["PATH"], "WSSS_VENV": sys.prefix}
    subprocess.run(["bash", "-c", script, "-", str(tmp_path / "eval.json"), str(tmp_path / "t.txt")], cwd=ROOT,
                   env=env, check=True, timeout=60)
    assert (tmp_path / "t.txt").read_text().strip() == want
    assert not (tmp_path / "t.txt.tmp").exists()
