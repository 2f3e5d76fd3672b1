"""DDP through torchrun (2 CPU processes, gloo): both ranks end with identical weights, equal to
a single-process run with the same effective batch. Run as a script by torchrun itself."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_trainer import ToyData, ToyTask, toy_cfg  # noqa: E402

from wsss.engine import Trainer, get_rank, seed_everything  # noqa: E402


def train(exp_dir):
    seed_everything(0)
    task = ToyTask()
    Trainer(toy_cfg(batch_size=8, epochs=2), task, ToyData(), exp_dir, collate_fn=default_collate).fit()
    return task


@pytest.mark.slow
def test_torchrun_two_ranks_identical_weights(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           __file__, str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(tmp_path / "ddp/rank0.pt")
    w1 = torch.load(tmp_path / "ddp/rank1.pt")
    single = train(tmp_path / "single").state_dict()
    for k in single:
        assert torch.equal(w0[k], w1[k]), k
        # Each rank sees half of every global batch: averaged gradients equal the full batch's.
        assert torch.allclose(w0[k], single[k], atol=1e-5), k
    assert (tmp_path / "ddp/checkpoints/last.pth").is_file()


if __name__ == "__main__":
    out = Path(sys.argv[1])
    task = train(out)
    torch.save(task.state_dict(), out / f"rank{get_rank()}.pt")
