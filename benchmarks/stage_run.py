"""Helpers of the stage benchmarks (saliency_synthetic.py, rw_synthetic.py): run a command from
the repository root, and describe the run (command line, machine) for the results file."""

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sh(cmd, env=None):
    """Run ``cmd`` (a list) in the repository root, echoing it; raises on a non-zero exit."""
    print("+", " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, env=env)


def run_record():
    """``{"command", "environment"}`` of this benchmark run, for its results JSON."""
    import torch

    return {"command": " ".join(shlex.quote(a) for a in ["python", f"benchmarks/{Path(sys.argv[0]).name}",
                                                         *sys.argv[1:]]),
            "environment": {"python": platform.python_version(), "torch": torch.__version__,
                            "cpus": os.cpu_count(), "machine": platform.machine()}}
