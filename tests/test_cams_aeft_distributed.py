"""AEFT's training step under torchrun: on 2 CPU ranks (gloo) with half the batch each, the
repulsion sees the global batch (its negatives and hard pairs are the single process's), the
mean of the ranks' losses is the single-process loss and DDP's averaged parameter gradients
are the single-process gradients, for the paper's defaults and for the reference's options
(classification on the first images of the global batch, the negative's own label mask, the
mask not detached). Run as a script by torchrun itself."""

import sys
from pathlib import Path

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from wsss.cams.aeft import AEFT
from wsss.engine import StepContext
from wsss.engine import distributed as du
from conftest import torchrun

B, C, S = 8, 4, 32
WORLD = 2
VARIANTS = {
    "paper": {},
    "reference": {"cls_samples": 3, "negative_mask": "negative", "detach_mask": False},
}


def make_cfg(**method):
    return {"model": {"backbone": "resnet18", "output_stride": 8, "norm_mode": "frozen", "weights": None,
                      "backbone_kwargs": {"width": 4}},
            "method": {"name": "aeft", "switch_epoch": 1, "hidden": 8, "grids": [1, 2, 4], "min_hard": 2,
                       "margin": 4.0, **method},
            "train": {"seed": 11}}


def make_batch():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(B, 3, S, S, generator=g)
    labels = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0],
                           [0, 0, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]], dtype=torch.float32)
    return {"image": images, "label": labels}


def make_task(name):
    torch.manual_seed(1)
    return AEFT(make_cfg(**VARIANTS[name]), C).train()


def run(task, rows, module=None):
    """The training step on ``rows`` of the batch: logged values and parameter gradients."""
    batch = {k: v[rows].clone() for k, v in make_batch().items()}
    cfg = task.cfg
    out = (module or task)(batch, StepContext(epoch=1, step=5, cfg=cfg))
    out["loss"].backward()
    return {"values": {k: torch.as_tensor(v).detach().float() for k, v in out.items()},
            "param_grads": {k: p.grad.clone() for k, p in task.named_parameters() if p.grad is not None}}


@pytest.mark.slow
def test_torchrun_two_ranks_match_the_whole_batch(tmp_path):
    torchrun(__file__, tmp_path, WORLD, timeout=300)
    for name in VARIANTS:
        ranks = [torch.load(tmp_path / f"{name}{r}.pt") for r in range(WORLD)]
        single = run(make_task(name), slice(0, B))
        v = single["values"]
        assert v["hard"] > 2 and v["repel"] > 0, "the case must exercise the repulsion"
        for r in ranks:  # the repulsion is computed on the gathered batch by every rank
            assert r["values"]["hard"] == v["hard"]
            assert torch.allclose(r["values"]["repel"], v["repel"], atol=1e-6)
        mean_loss = sum(r["values"]["loss"] for r in ranks) / WORLD
        assert torch.allclose(mean_loss, v["loss"], atol=1e-5), name
        assert single["param_grads"].keys() == ranks[0]["param_grads"].keys()
        for k, g in single["param_grads"].items():  # DDP's average equals the whole batch's gradient
            for r in ranks:
                assert torch.allclose(r["param_grads"][k], g, rtol=1e-4, atol=1e-6), (name, k)


if __name__ == "__main__":
    du.init_distributed()
    rank = du.get_rank()
    half = B // du.get_world_size()
    for name in VARIANTS:
        task = make_task(name)
        result = run(task, slice(rank * half, (rank + 1) * half), DistributedDataParallel(task))
        torch.save(result, Path(sys.argv[1]) / f"{name}{rank}.pt")
    du.destroy()
