"""Mid-epoch checkpoints and stop signals: a run killed (or stopped by SIGTERM) inside an epoch
and resumed ends bit-identical to an uninterrupted run, whatever num_workers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_engine_trainer import Kill, ToyData, ToyTask, same_weights, toy_cfg  # noqa: E402

from wsss.cli import run_main  # noqa: E402
from wsss.engine import Trainer, load_checkpoint, seed_everything  # noqa: E402
from wsss.engine.sampler import EpochSampler  # noqa: E402
from wsss.engine.trainer import checkpoint_every, effective_train_config  # noqa: E402
from wsss.errors import EXIT_PREEMPTED, ConfigError, Preempted  # noqa: E402


class Signalled(ToyTask):
    """Sends itself ``signum`` during step ``at`` (an in-process SIGTERM from a scheduler);
    sleeps ``pause`` seconds per step (so a parent process can signal it)."""

    def __init__(self, at=None, signum=signal.SIGTERM, pause=0.0, **kw):
        super().__init__(dropout=0.3, **kw)
        self.at, self.signum, self.pause = at, signum, pause

    def training_step(self, batch, ctx):
        if ctx.step == self.at and ctx.micro == 0:
            os.kill(os.getpid(), self.signum)
        time.sleep(self.pause)
        return super().training_step(batch, ctx)


def run(exp, cfg, **task_kw):
    """``(task, trainer, summary)`` of a run of :class:`Signalled` (built after seeding)."""
    seed_everything(0)
    task = Signalled(**task_kw)
    trainer = Trainer(cfg, task, ToyData(noise=0.3), exp, collate_fn=default_collate)
    return task, trainer, trainer.fit()


def rows(exp):
    """metrics.jsonl without its timings."""
    return [{k: v for k, v in json.loads(line).items() if k not in ("time", "seconds")}
            for line in (Path(exp) / "metrics.jsonl").read_text().splitlines()]


def test_epoch_sampler_skips_exactly_the_seen_samples():
    full = EpochSampler(10, num_replicas=2, rank=1, seed=4)
    full.set_epoch(3)
    items = list(full)
    assert len(items) == 5 and len({s for _, s in items}) == 5
    # Same order as DistributedSampler(shuffle, drop_last) for this rank.
    ref = torch.utils.data.DistributedSampler(range(10), num_replicas=2, rank=1, seed=4, drop_last=True)
    ref.set_epoch(3)
    assert [i for i, _ in items] == list(ref)
    part = EpochSampler(10, num_replicas=2, rank=1, seed=4)
    part.set_epoch(3, start=2)
    assert list(part) == items[2:] and len(part) == 3
    other = EpochSampler(10, num_replicas=2, rank=1, seed=4)
    other.set_epoch(4)
    assert {s for _, s in other}.isdisjoint({s for _, s in items})


def test_augmentation_does_not_depend_on_num_workers(tmp_path):
    cfg = toy_cfg(epochs=1)
    a = run(tmp_path / "w0", cfg)[0]
    b = run(tmp_path / "w2", toy_cfg(epochs=1, num_workers=2))[0]
    assert same_weights(a, b)


@pytest.mark.parametrize("workers,every", [(0, 2), (2, "0.000001min")])
def test_killed_twice_mid_epoch_resumes_bit_identical(tmp_path, workers, every):
    """6 steps per epoch, 3 epochs; killed at steps 5 and 10 (inside epochs 1 and 2)."""
    cfg = toy_cfg(num_workers=workers, checkpoint_every=every)
    full = run(tmp_path / "full", cfg)[0]
    exp = tmp_path / "cut"
    for kill_at, saved in ((5, 4 if every == 2 else 5), (10, 10)):
        with pytest.raises(Kill):
            run(exp, cfg, kill_at=kill_at)
        ckpt = load_checkpoint(exp / "checkpoints/last.pth")
        assert ckpt["step"] == saved and ckpt["partial"]["epoch_step"] == saved % 6
        assert not list((exp / "checkpoints").glob("*.tmp*"))
    resumed, trainer, summary = run(exp, cfg)
    assert summary["steps"] == 18 and trainer.epoch == 3
    assert same_weights(full, resumed)
    assert rows(tmp_path / "full") == rows(exp)
    assert load_checkpoint(exp / "checkpoints/last.pth")["partial"] is None


@pytest.mark.parametrize("at,signum", [(7, signal.SIGTERM), (5, signal.SIGUSR1)])
def test_stop_signal_checkpoints_at_the_next_step_and_resumes(tmp_path, at, signum):
    cfg = toy_cfg(checkpoint_every=None)
    full = run(tmp_path / "full", cfg)[0]
    before = signal.getsignal(signum)
    with pytest.raises(Preempted, match=signal.Signals(signum).name) as err:
        run(tmp_path / "cut", cfg, at=at, signum=signum)
    assert signal.getsignal(signum) == before  # the handler is only installed during fit
    assert "rerun" in str(err.value) and "last.pth" in str(err.value)
    ckpt = load_checkpoint(tmp_path / "cut/checkpoints/last.pth")
    assert ckpt["step"] == at + 1  # the step in progress finished, then the checkpoint
    resumed = run(tmp_path / "cut", cfg)[0]
    assert same_weights(full, resumed)
    assert rows(tmp_path / "full") == rows(tmp_path / "cut")


@pytest.mark.slow
@pytest.mark.parametrize("target", ["process", "group"])
def test_sigterm_to_a_training_process_exits_75_and_resumes(tmp_path, target):
    """A real SIGTERM from outside, delivered while a worker-fed loader is running: to the main
    process, or to its whole process group as schedulers do (the data workers ignore it, so the
    main process still writes its checkpoint)."""
    cfg = toy_cfg(num_workers=1)
    full = run(tmp_path / "full", cfg)[0]
    exp = tmp_path / "cut"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, __file__, str(exp)], env=env, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (exp / "metrics.jsonl").is_file():
        time.sleep(0.05)
    if target == "group":
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_PREEMPTED, err
    assert "Traceback" not in err and "stopped: " in err and "SIGTERM" in err
    step = load_checkpoint(exp / "checkpoints/last.pth")["step"]
    assert 0 < step < 18
    resumed = run(exp, cfg)[0]
    assert same_weights(full, resumed)


def test_train_config_errors():
    assert checkpoint_every(500) == (500, None)
    assert checkpoint_every("15min") == (None, 900.0)
    assert checkpoint_every({"steps": 10, "minutes": 1}) == (10, 60.0)
    assert checkpoint_every(None) == (None, None)
    for bad in ("often", {"hours": 1}, {"steps": "x"}, -3):
        with pytest.raises(ConfigError, match="checkpoint_every"):
            checkpoint_every(bad)
    with pytest.raises(ConfigError, match=r"train.lr='fast' must be a number"):
        effective_train_config({"train": {"lr": "fast"}})
    with pytest.raises(ConfigError, match=r"(?s)unknown key train.epoch\b.*known keys:.*epochs"):
        effective_train_config({"train": {"epoch": 3}})
    assert effective_train_config({"train": {"lr": "1e-3"}})["train"]["lr"] == 1e-3  # YAML 1.1 reads 1e-3 as text


if __name__ == "__main__":  # the process the SIGTERM test signals
    def main():
        seed_everything(0)
        task = Signalled(pause=0.1)
        Trainer(toy_cfg(num_workers=1), task, ToyData(noise=0.3), sys.argv[1], collate_fn=default_collate).fit()

    run_main(main)
