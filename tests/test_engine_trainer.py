"""Trainer behaviour on a toy task (CPU): exact resume, accumulation, poly lr, checkpoints."""

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import default_collate

from wsss.engine import TaskModule, Trainer, load_checkpoint, load_weights, param_groups_4, seed_everything
from wsss.errors import CheckpointError


class ToyData(torch.utils.data.Dataset):
    """24 feature vectors with multi-hot labels; optional numpy-driven augmentation noise."""

    def __init__(self, n=24, noise=0.0):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 4, generator=g)
        self.y = (self.x[:, :3] > 0).float()
        self.noise = noise

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i]
        if self.noise:
            x = x + torch.from_numpy(np.random.normal(0, self.noise, 4).astype(np.float32))
        return {"id": str(i), "image": x, "label": self.y[i]}


class Kill(Exception):
    pass


class ToyTask(TaskModule):
    def __init__(self, dropout=0.0, kill_at=None):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(8, 3)
        self.kill_at = kill_at

    def param_groups(self):
        return {"main": param_groups_4(self.body, self.head)}

    def training_step(self, batch, ctx):
        if self.kill_at is not None and ctx.step == self.kill_at:
            raise Kill()
        logits = self.head(self.drop(torch.relu(self.body(batch["image"]))))
        cls = nn.functional.multilabel_soft_margin_loss(logits, batch["label"])
        return {"loss": cls, "cls": cls.detach(), "progress": ctx.progress}


def toy_cfg(**train):
    t = {"epochs": 3, "batch_size": 4, "lr": 0.05, "weight_decay": 1e-4, "momentum": 0.9, "num_workers": 0,
         "log_every": 1, "seed": 3}
    t.update(train)
    return {"train": t}


def run(tmp, cfg, noise=0.0, resume=True, **task_kw):
    seed_everything(0)
    task = ToyTask(**task_kw)
    trainer = Trainer(cfg, task, ToyData(noise=noise), tmp, collate_fn=default_collate)
    summary = trainer.fit(resume=resume)
    return task, trainer, summary


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_after_kill_reaches_identical_weights(tmp_path, workers):
    cfg = toy_cfg(num_workers=workers)
    full, _, _ = run(tmp_path / "full", cfg, noise=0.3, dropout=0.3)
    with pytest.raises(Kill):  # killed in the middle of the second epoch (6 steps per epoch)
        run(tmp_path / "cut", cfg, noise=0.3, dropout=0.3, kill_at=9)
    assert load_checkpoint(tmp_path / "cut/checkpoints/last.pth")["step"] == 6
    resumed, trainer, summary = run(tmp_path / "cut", cfg, noise=0.3, dropout=0.3)
    assert summary["steps"] == 18 and trainer.epoch == 3
    assert same_weights(full, resumed)
    # The log of the resumed run equals the uninterrupted one (no duplicated steps).
    rows = lambda p: [{k: v for k, v in json.loads(l).items() if k not in ("time", "seconds")}
                      for l in (p / "metrics.jsonl").read_text().splitlines()]
    assert rows(tmp_path / "full") == rows(tmp_path / "cut")
    # A finished run is not retrained but its final weights are loaded into the task;
    # --overwrite (resume=False) retrains from scratch, reaching the same weights again.
    again, _, s2 = run(tmp_path / "cut", cfg, noise=0.3, dropout=0.3, kill_at=0)
    assert s2["steps"] == 18 and same_weights(again, full)
    fresh, _, _ = run(tmp_path / "cut", cfg, noise=0.3, dropout=0.3, resume=False)
    assert same_weights(fresh, full)


def test_poly_lr_per_step_and_config_saved(tmp_path):
    cfg = toy_cfg(epochs=2, poly_power=0.9)
    _, trainer, _ = run(tmp_path, cfg)
    steps = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["kind"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 13))
    for r in steps:  # lr used by optimizer step r["step"] - 1 (backbone weights: lr x1)
        assert r["lr"] == pytest.approx(0.05 * (1 - (r["step"] - 1) / 12) ** 0.9)
        assert r["progress"] == pytest.approx((r["step"] - 1) / 12)
    saved = (tmp_path / "config.yaml").read_text()
    assert "poly_power: 0.9" in saved and "accumulate: 1" in saved  # effective config, defaults filled
    groups = {g["name"]: g for g in trainer.optimizers["main"].param_groups}
    assert groups["new.bias"]["lr"] == pytest.approx(20 * 0.05 * (1 - 11 / 12) ** 0.9)


def test_gradient_accumulation_equals_large_batch(tmp_path):
    a, ta, _ = run(tmp_path / "a", toy_cfg(batch_size=8, accumulate=1))
    b, tb, _ = run(tmp_path / "b", toy_cfg(batch_size=8, accumulate=4))
    assert ta.micro_batch == 8 and tb.micro_batch == 2 and ta.max_step == tb.max_step == 9
    for k, v in a.state_dict().items():
        assert torch.allclose(v, b.state_dict()[k], atol=1e-6), k


def test_checkpoint_errors_name_the_file(tmp_path):
    task, _, _ = run(tmp_path, toy_cfg(epochs=1))
    ckpt = tmp_path / "checkpoints/last.pth"
    other = nn.Sequential(nn.Linear(4, 5))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(other, ckpt)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(ckpt.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_checkpoint(bad)
    fresh = ToyTask()
    load_weights(fresh, ckpt)
    assert same_weights(fresh, task)


class TwoNets(ToyTask):
    """A second network with its own optimizer, trained only through its own loss term."""

    def __init__(self):
        super().__init__()
        self.aux = nn.Linear(4, 3)

    def param_groups(self):
        return {"main": param_groups_4(self.body, self.head), "aux": [{"params": list(self.aux.parameters())}]}

    def training_step(self, batch, ctx):
        out = super().training_step(batch, ctx)
        aux = nn.functional.multilabel_soft_margin_loss(self.aux(batch["image"]), batch["label"])
        return {**out, "loss": out["loss"] + aux, "aux": aux.detach()}


def test_every_optimizer_steps_with_its_own_settings(tmp_path):
    seed_everything(0)
    task = TwoNets()
    before = {k: v.clone() for k, v in task.state_dict().items()}
    cfg = toy_cfg(epochs=1, optimizers={"aux": {"lr": 0.5, "momentum": 0.0}})
    trainer = Trainer(cfg, task, ToyData(), tmp_path, collate_fn=default_collate)
    assert trainer.optimizers["aux"].param_groups[0]["momentum"] == 0.0
    assert trainer.optimizers["main"].param_groups[0]["momentum"] == 0.9
    trainer.fit()
    for k, v in task.state_dict().items():
        assert not torch.equal(v, before[k]), k  # both networks moved
    rec = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()][0]
    assert rec["lr/aux"] == pytest.approx(0.5) and rec["lr"] == pytest.approx(0.05)
    with pytest.raises(CheckpointError, match="aux"):  # a checkpoint without this optimizer
        t2 = TwoNets()
        ckpt = load_checkpoint(tmp_path / "checkpoints/last.pth")
        del ckpt["optimizers"]["aux"]
        torch.save(ckpt, tmp_path / "checkpoints/last.pth")
        Trainer(cfg, t2, ToyData(), tmp_path, collate_fn=default_collate).fit()


def test_worker_init_fn_gives_workers_one_opencv_thread():
    import cv2

    from wsss.engine.seed import worker_init_fn

    before = cv2.getNumThreads()
    try:
        worker_init_fn(0)
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
