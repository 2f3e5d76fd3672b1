"""benchmarks/ref_harness.py times the progress bars of an unmodified script: with --bar only the
matching bar counts, and --max-steps stops the process after that many of its items."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
from tqdm import tqdm
for _ in tqdm(range(50), desc="labels train"):
    pass
for epoch in range(2):
    for _ in tqdm(range(4), desc=f"epoch {epoch + 1}/2"):
        pass
print("finished")
"""


def harness(tmp_path, *flags):
    script = tmp_path / "loop.py"
    script.write_text(SCRIPT)
    timing = tmp_path / "timing.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks/ref_harness.py"), "--timing", str(timing), *flags,
                          "--", str(script)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return json.loads(timing.read_text())["events"], run.stdout


def test_bar_filter_counts_only_the_training_loop(tmp_path):
    events, out = harness(tmp_path, "--bar", r"^epoch \d", "--max-steps", "6")
    items = [e for e in events if e[2]]
    assert len(items) == 6  # 4 of epoch 1, 2 of epoch 2; the 50 label items are not steps
    assert {e[0] for e in events} == {1, 2}  # two timed bars: the epochs
    assert "finished" not in out  # stopped at the 6th step


def test_without_filter_every_bar_counts(tmp_path):
    events, out = harness(tmp_path, "--max-steps", "6")
    assert len([e for e in events if e[2]]) == 6 and {e[0] for e in events} == {1}  # all in the label bar
    assert "finished" not in out
