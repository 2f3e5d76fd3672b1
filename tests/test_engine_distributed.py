"""Batch-coupled losses under torchrun: C2AM's similarity losses and the CSE soft mask's batch
maximum, computed on 2 CPU ranks (gloo) with half the batch each, equal the single-process loss
on the whole batch, and DDP's averaged parameter gradients equal the single-process gradients.
Run as a script by torchrun itself."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from wsss.cams.erasing import remove_class, soft_mask
from wsss.cams.losses import mlsm
from wsss.engine import all_gather_grad, global_max
from wsss.engine import distributed as du
from wsss.saliency.losses import contrastive_losses
from conftest import torchrun

B, D_IN, D, C, S = 8, 6, 5, 3, 8
WORLD = 2


def make_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, D_IN, generator=g)
    images = torch.randn(B, 3, S, S, generator=g)
    labels = (torch.rand(B, C, generator=g) > 0.5).float()
    labels[labels.sum(1) == 0, 0] = 1.0
    classes = torch.multinomial(labels, 1, generator=g).squeeze(1)
    return x, images, labels, classes


def make_models():
    torch.manual_seed(1)
    emb = nn.Linear(D_IN, 2 * D)
    cam_net = nn.Conv2d(3, C, 3, stride=2, padding=1)
    oc = nn.Linear(3 * S * S, C).requires_grad_(False)
    return emb, cam_net, oc


def c2am_loss(emb, x):
    out = emb(x)
    return sum(contrastive_losses(out[:, :D], out[:, D:]).values())


def cse_loss(cam_net, oc, images, labels, classes):
    erased = images * (1 - soft_mask(cam_net(images), classes, (S, S)))
    return mlsm(oc(erased.flatten(1)), remove_class(labels, classes))


def run(emb, cam_net, oc, rows):
    """Both losses on ``rows`` of the batch: values, parameter and input gradients."""
    x, images, labels, classes = (t[rows].clone() for t in make_data())
    out = {}
    for name, model, args in (("c2am", emb, (x,)), ("cse", cam_net, (images,))):
        inp = args[0].requires_grad_(True)
        loss = c2am_loss(model, inp) if name == "c2am" else cse_loss(model, oc, inp, labels, classes)
        loss.backward()
        net = model.module if isinstance(model, DistributedDataParallel) else model
        out[name] = {"loss": loss.detach(), "input_grad": inp.grad,
                     "param_grads": {k: p.grad.clone() for k, p in net.named_parameters()}}
    return out


def single_process():
    return run(*make_models(), slice(0, B))


def test_gather_and_max_are_identities_without_torchrun():
    t = torch.randn(3, 4, requires_grad=True)
    assert all_gather_grad(t) is t
    m = global_max(t)
    assert m.item() == t.max().item()
    m.backward()
    assert t.grad.sum().item() == 1.0 and t.grad.view(-1)[t.argmax()].item() == 1.0


@pytest.mark.slow
def test_torchrun_two_ranks_match_the_whole_batch(tmp_path):
    torchrun(__file__, tmp_path, WORLD, timeout=240)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    single = single_process()
    half = B // WORLD
    for name in ("c2am", "cse"):
        ref = single[name]
        if name == "c2am":  # every rank computes the whole batch's similarity losses
            for r in ranks:
                assert torch.allclose(r[name]["loss"], ref["loss"], atol=1e-6)
        else:  # per-rank means of the CSE loss, with the mask divided by the global batch max
            assert torch.allclose(sum(r[name]["loss"] for r in ranks) / WORLD, ref["loss"], atol=1e-6)
            assert not torch.allclose(ranks[0][name]["loss"], ranks[1][name]["loss"])
        for k, g in ref["param_grads"].items():  # DDP's average equals the whole batch's gradient
            for r in ranks:
                assert torch.allclose(r[name]["param_grads"][k], g, atol=1e-6), (name, k)
        for i, r in enumerate(ranks):  # DDP divides by the world size after backward: inputs get N x
            local = r[name]["input_grad"] / WORLD
            assert torch.allclose(local, ref["input_grad"][i * half:(i + 1) * half], atol=1e-6), name


if __name__ == "__main__":
    du.init_distributed()
    rank = du.get_rank()
    emb, cam_net, oc = make_models()
    ddp = [DistributedDataParallel(m) for m in (emb, cam_net)]
    half = B // du.get_world_size()
    result = run(ddp[0], ddp[1], oc, slice(rank * half, (rank + 1) * half))
    torch.save(result, Path(sys.argv[1]) / f"rank{rank}.pt")
    du.destroy()
