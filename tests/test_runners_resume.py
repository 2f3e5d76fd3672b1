"""runners/common.sh `resumable`: a stage that exits 75 (preempted) is rerun without --overwrite
when RESUME=1; otherwise the runner stops with 75 and says how to resume."""

import subprocess
from pathlib import Path

import pytest

from wsss.errors import EXIT_PREEMPTED

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
set -euo pipefail
GPUS=0 OVERRIDES= OVERWRITE=0
source runners/common.sh
stage() {{  # exits 75 twice, then succeeds; logs its arguments
  echo "$*" >> "$LOG"
  [ "$(wc -l < "$LOG")" -ge 3 ] || return {code}
}}
resumable stage --overwrite x
echo finished
"""


@pytest.mark.parametrize("resume", ["1", "0"])
def test_runner_reruns_a_preempted_stage_only_when_asked(tmp_path, resume):
    log = tmp_path / "log"
    proc = subprocess.run(["bash", "-c", SCRIPT.format(code=EXIT_PREEMPTED)], cwd=ROOT, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "LOG": str(log), "RESUME": resume}, timeout=30)
    calls = log.read_text().splitlines()
    if resume == "1":
        assert proc.returncode == 0 and "finished" in proc.stdout
        assert calls == ["--overwrite x", "x", "x"]  # reruns drop --overwrite (it would discard the checkpoint)
    else:
        assert proc.returncode == EXIT_PREEMPTED and "finished" not in proc.stdout
        assert calls == ["--overwrite x"] and "RESUME=1" in proc.stderr


def test_the_runner_exit_code_is_the_python_one():
    text = (ROOT / "runners/common.sh").read_text()
    assert f"EXIT_PREEMPTED={EXIT_PREEMPTED}" in text
