"""Model selection: deterministic hold-out, evaluation = direct confusion, best-epoch bookkeeping."""

import json
import random

import numpy as np
import pytest
import torch
import torch.nn as nn

from wsss.engine import load_checkpoint
from wsss.errors import ConfigError
from wsss.metrics import confusion_matrix
from wsss.segmentation.selection import ModelSelector, evaluate_model, holdout_ids

K = 3  # outputs: background + 2 classes


class Samples(list):
    """A list of raw samples standing in for a dataset."""


def make_samples(n=4, size=(10, 12), seed=0):
    rng = np.random.default_rng(seed)
    out = Samples()
    for i in range(n):
        mask = rng.integers(0, K, size).astype(np.uint8)
        mask[0, :3] = 255
        image = np.repeat(mask[..., None], 3, axis=2)
        out.append({"id": f"im{i}", "image": image, "mask": mask, "label": None, "maps": {}})
    return out


def to_tensor(sample):
    return {**sample, "image": torch.from_numpy(sample["image"].astype(np.float32)).permute(2, 0, 1)}


class Oracle(nn.Module):
    """Logits from channel 0 of the image (which holds the mask): right except where ``flip``."""

    def __init__(self, wrong_class=None):
        super().__init__()
        self.wrong_class = wrong_class
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        labels = x[:, 0].round().long().clamp(0, K - 1)
        if self.wrong_class is not None:
            labels = torch.where(labels == self.wrong_class, torch.zeros_like(labels), labels)
        return nn.functional.one_hot(labels, K).permute(0, 3, 1, 2).float() * 5 + self.w


class FakeTask(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.num_outputs = model, K


def test_holdout_is_deterministic_and_order_free():
    ids = [f"img_{i:04d}" for i in range(200)]
    held = holdout_ids(ids, 0.05)
    shuffled = ids[:]
    random.Random(0).shuffle(shuffled)
    assert held == holdout_ids(shuffled, 0.05) and len(held) == 10 and set(held) <= set(ids)
    for bad in (0.0, 1.0):
        with pytest.raises(ConfigError):
            holdout_ids(ids, bad)


def test_evaluate_model_equals_direct_confusion():
    samples = make_samples()
    model = Oracle(wrong_class=2)
    conf = evaluate_model(model, samples, to_tensor, K, torch.device("cpu"))
    want = sum(confusion_matrix(s["mask"], np.where(s["mask"] == 2, 0, np.minimum(s["mask"], K - 1)), K)
               for s in samples)
    np.testing.assert_array_equal(conf, want)
    assert conf[2, 2] == 0 and conf[1, 1] > 0


def test_selector_keeps_the_best_trained_epoch(tmp_path, capsys):
    samples = make_samples()
    sel = ModelSelector(tmp_path, samples, to_tensor, "pseudo", ["a", "b"], torch.device("cpu"),
                        cfg={"model": {}}, describe="held-out 4")
    quality = {0: None, 1: 1, 2: None, 3: 2}  # epoch 0 perfect (never selectable), 2 best of the rest
    for epoch, wrong in quality.items():
        sel(FakeTask(Oracle(wrong)), epoch, 10 * epoch)
    sel(FakeTask(Oracle(1)), 2, 20)  # already scored: ignored
    state = json.loads((tmp_path / "selection.json").read_text())
    assert state["best_epoch"] == 2 and sorted(state["epochs"]) == ["0", "1", "2", "3"]
    assert state["epochs"]["0"]["miou"] == 100.0 and state["best_miou"] == 100.0
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pth")
    assert best["epoch"] == 2 and best["selection"]["select_on"] == "pseudo"
    vals = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [v["epoch"] for v in vals] == [0, 1, 2, 3] and all(v["kind"] == "val" for v in vals)
    with pytest.raises(ConfigError, match="--select-on"):
        ModelSelector(tmp_path, samples, to_tensor, "gt", ["a", "b"], torch.device("cpu"), describe="val")
