"""Engine hooks: train start (resumed or not), epoch end, per-epoch batch sizes (phases) with an
exact resume across the phase boundary, and the optional experiment loggers."""

import json
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

from wsss.engine import TaskModule, Trainer, param_groups_4, seed_everything
from wsss.errors import ConfigError


class Noisy(torch.utils.data.Dataset):
    """24 vectors with multi-hot labels and numpy-driven augmentation noise."""

    def __init__(self, n=24):
        g = torch.Generator().manual_seed(5)
        self.x = torch.randn(n, 4, generator=g)
        self.y = (self.x[:, :3] > 0).float()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        noise = torch.from_numpy(np.random.normal(0, 0.3, 4).astype(np.float32))
        return {"id": str(i), "image": self.x[i] + noise, "label": self.y[i]}


class Kill(Exception):
    pass


class PhasedTask(TaskModule):
    """Batch 2 for epochs < 2, then 6 (as AEFT's 8 -> 32); records what the engine tells it."""

    def __init__(self, kill_at=None):
        super().__init__()
        self.body, self.head, self.drop = nn.Linear(4, 8), nn.Linear(8, 3), nn.Dropout(0.3)
        self.kill_at = kill_at
        self.events, self.batches = [], []

    def epoch_batch_size(self, epoch, batch_size):
        return 2 if epoch < 2 else 6

    def param_groups(self):
        return {"main": param_groups_4(self.body, self.head)}

    def training_step(self, batch, ctx):
        if ctx.step == self.kill_at:
            raise Kill()
        self.batches.append((ctx.epoch, len(batch["image"]), ctx.batch_size, ctx.steps_per_epoch))
        logits = self.head(self.drop(torch.relu(self.body(batch["image"]))))
        loss = nn.functional.multilabel_soft_margin_loss(logits, batch["label"])
        return {"loss": loss, "progress": ctx.progress}

    def on_train_start(self, ctx, resumed):
        self.events.append(("start", ctx.epoch, ctx.step, resumed))

    def on_epoch_end(self, ctx):
        self.events.append(("end", ctx.epoch, ctx.step))
        ctx.log({"kind": "check", "epoch": ctx.epoch + 1, "step": ctx.step, "value": float(ctx.epoch)})


def cfg(**train):
    return {"train": {"epochs": 4, "batch_size": 4, "lr": 0.05, "momentum": 0.9, "num_workers": 0, "log_every": 1,
                      "seed": 1, **train}}


def fit(exp, task, resume=True, **train):
    seed_everything(0)
    trainer = Trainer(cfg(**train), task, Noisy(), exp, collate_fn=default_collate)
    trainer.fit(resume=resume)
    return trainer


def test_phases_set_the_batch_steps_and_max_step(tmp_path):
    task = PhasedTask()
    trainer = fit(tmp_path, task)
    assert trainer.epoch_steps == [12, 12, 4, 4] and trainer.max_step == 32 and trainer.step == 32
    sizes = {(e, n, b, s) for e, n, b, s in task.batches}
    assert sizes == {(0, 2, 2, 12), (1, 2, 2, 12), (2, 6, 6, 4), (3, 6, 6, 4)}
    assert task.events[0] == ("start", 0, 0, False)
    assert [e for e in task.events if e[0] == "end"] == [("end", 0, 12), ("end", 1, 24), ("end", 2, 28), ("end", 3, 32)]
    records = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["value"] for r in records if r["kind"] == "check"] == [0.0, 1.0, 2.0, 3.0]
    progress = [r["progress"] for r in records if r["kind"] == "step"]
    assert progress[-1] == pytest.approx(31 / 32)  # poly schedules run over the phases' sum


def test_kill_and_resume_across_the_phase_boundary_is_exact(tmp_path):
    full = fit(tmp_path / "full", PhasedTask()).task
    with pytest.raises(Kill):  # killed in epoch 3 (batch 6), the last checkpoint is epoch 2 (batch 2)
        fit(tmp_path / "cut", PhasedTask(kill_at=26))
    task = PhasedTask()
    resumed = fit(tmp_path / "cut", task)
    assert task.events[0] == ("start", 2, 24, True)
    assert resumed.step == 32
    a, b = full.state_dict(), task.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    again = PhasedTask()
    fit(tmp_path / "cut", again)  # already trained: train start still runs (resumed), no epoch
    assert again.events == [("start", 4, 32, True)]


def test_the_task_sets_the_length_of_the_poly_schedule(tmp_path):
    """AEFT's reference counts every epoch at its first phase's batch: 4 x 12 = 48 steps of
    schedule for 32 steps run, so the lr never reaches 0; progress still counts the real steps."""
    class Longer(PhasedTask):
        def lr_schedule_steps(self, epoch_steps):
            return epoch_steps[0] * len(epoch_steps)

    trainer = fit(tmp_path, Longer())
    assert trainer.max_step == 32 and trainer.poly_steps == 48
    steps = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["kind"] == "step"]
    assert steps[-1]["lr"] == pytest.approx(0.05 * (1 - 31 / 48) ** 0.9)
    assert steps[-1]["progress"] == pytest.approx(31 / 32)

    class Broken(PhasedTask):
        def lr_schedule_steps(self, epoch_steps):
            return 0

    with pytest.raises(ConfigError, match="lr_schedule_steps"):
        Trainer(cfg(), Broken(), Noisy(), tmp_path / "b", collate_fn=default_collate)


def test_a_phase_that_does_not_split_is_refused(tmp_path):
    class Odd(PhasedTask):
        def epoch_batch_size(self, epoch, batch_size):
            return 3 if epoch else 4

    with pytest.raises(ConfigError, match="epoch 2"):
        Trainer(cfg(accumulate=2), Odd(), Noisy(), tmp_path, collate_fn=default_collate)

    class Big(PhasedTask):
        def epoch_batch_size(self, epoch, batch_size):
            return 48 if epoch == 3 else 4

    with pytest.raises(ConfigError, match="fewer than one batch"):
        Trainer(cfg(), Big(), Noisy(), tmp_path, collate_fn=default_collate)


def test_a_logger_whose_package_is_missing_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    with pytest.raises(ConfigError, match="tensorboard package is not installed"):
        Trainer(cfg(loggers=["tensorboard"]), PhasedTask(), Noisy(), tmp_path, collate_fn=default_collate)
    with pytest.raises(ConfigError, match="unknown experiment logger"):
        Trainer(cfg(loggers=["nope"]), PhasedTask(), Noisy(), tmp_path, collate_fn=default_collate)


def test_wandb_logger_gets_every_record_and_resumes_its_run(tmp_path, monkeypatch):
    calls = []

    class Run:
        def log(self, values, step):
            calls.append(("log", step, values))

        def finish(self):
            calls.append(("finish",))

    fake = types.SimpleNamespace(init=lambda **kw: calls.append(("init", kw)) or Run())
    monkeypatch.setitem(sys.modules, "wandb", fake)
    with pytest.raises(Kill):
        fit(tmp_path, PhasedTask(kill_at=26), loggers=[{"name": "wandb", "project": "p", "mode": "offline"}])
    fit(tmp_path, PhasedTask(), loggers=[{"name": "wandb", "project": "p", "mode": "offline"}])
    inits = [c[1] for c in calls if c[0] == "init"]
    assert len(inits) == 2 and inits[0]["id"] == inits[1]["id"] and inits[0]["project"] == "p"
    assert inits[0]["config"]["train"]["loggers"][0]["name"] == "wandb"
    assert [c[0] for c in calls].count("finish") == 2  # closed after the kill too
    logged = [c for c in calls if c[0] == "log"]
    assert logged[-1][1] == 32
    for key in ("step/loss", "epoch/loss", "check/value"):
        assert any(key in c[2] for c in logged), key


def test_tensorboard_mirrors_metrics_jsonl(tmp_path):
    pytest.importorskip("torch.utils.tensorboard")
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    fit(tmp_path, PhasedTask(), loggers=["tensorboard"], epochs=2)
    events = accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    records = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [(r["step"], r["loss"]) for r in records if r["kind"] == "step"]
    logged = [(e.step, e.value) for e in events.Scalars("step/loss")]
    assert len(logged) == len(steps) == 24
    assert all(a == b and v == pytest.approx(w) for (a, v), (b, w) in zip(logged, steps))
    assert [e.value for e in events.Scalars("check/value")] == [0.0, 1.0]
