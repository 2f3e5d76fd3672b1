"""torchrun support: process-group setup from the environment, rank helpers, sharding.

``torchrun --nproc_per_node=N tool.py ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
:func:`init_distributed` reads them and joins the group (``nccl`` on CUDA, ``gloo`` on CPU).
Without torchrun everything degrades to a single process (rank 0 of 1).

Losses that couple the images of a batch (similarities between all pairs, a batch maximum)
see the whole global batch through :func:`all_gather_grad` / :func:`global_max`, so a recipe
gives the same loss and the same averaged gradient on 1 or N processes (CONTRIBUTING.md).
"""

import os

import torch
import torch.distributed as dist


def is_initialized():
    return dist.is_available() and dist.is_initialized()


def get_rank():
    return dist.get_rank() if is_initialized() else 0


def get_world_size():
    return dist.get_world_size() if is_initialized() else 1


def is_main():
    return get_rank() == 0


def local_rank():
    return int(os.environ.get("LOCAL_RANK", 0))


def init_distributed():
    """Join the process group described by torchrun's env vars; return (rank, world_size).

    A no-op (0, 1) when ``WORLD_SIZE`` is unset or 1, or when the group already exists.
    """
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return get_rank(), get_world_size()


def resolve_device(name="auto"):
    """``auto`` -> this rank's CUDA device when CUDA is present, else CPU."""
    if name in (None, "auto"):
        name = f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def barrier():
    if is_initialized():
        dist.barrier()


def all_gather_object(obj):
    """List of ``obj`` from every rank (a one-element list without torchrun)."""
    if not is_initialized():
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(values, device):
    """Sum a list of floats over ranks."""
    if not is_initialized():
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


class _AllGather(torch.autograd.Function):
    """Concatenation over ranks along dim 0; backward sums the gradient over ranks and keeps
    this rank's rows (each rank's loss may depend on every rank's rows)."""

    @staticmethod
    def forward(ctx, tensor):
        world, rank = get_world_size(), get_rank()
        sizes = [torch.zeros(1, dtype=torch.int64, device=tensor.device) for _ in range(world)]
        dist.all_gather(sizes, torch.tensor([tensor.shape[0]], dtype=torch.int64, device=tensor.device))
        sizes = [int(s) for s in sizes]
        padded = tensor.new_zeros((max(sizes),) + tuple(tensor.shape[1:]))
        padded[:tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        ctx.start, ctx.stop = sum(sizes[:rank]), sum(sizes[:rank + 1])
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.start:ctx.stop]


def all_gather_grad(tensor):
    """``tensor`` of every rank concatenated along dim 0 in rank order (sizes may differ);
    differentiable; ``tensor`` itself when not distributed.

    Gradient: the rows of this rank receive the sum over ranks of each rank's gradient for
    them. With DDP averaging parameter gradients, the result is the gradient of the mean over
    ranks of the per-rank losses: a loss that every rank computes on the gathered batch (e.g.
    C2AM's similarity losses) or a per-rank mean that reads a gathered statistic (the CSE
    mask's batch maximum) gets exactly its single-process whole-batch gradient, no rescaling
    needed. Every rank must call it, in the same order (it is a collective, in backward too).
    """
    if not is_initialized() or get_world_size() == 1:
        return tensor
    return _AllGather.apply(tensor)


def global_max(tensor):
    """Maximum of every element of ``tensor`` on every rank (a 0-d tensor); differentiable, the
    gradient reaching the element that holds it on its rank. ``tensor.max()`` when not distributed."""
    return all_gather_grad(tensor.max().reshape(1)).max()


def shard(items, rank=None, world=None):
    """This rank's share of ``items``: every ``world``-th item starting at ``rank``."""
    rank = get_rank() if rank is None else rank
    world = get_world_size() if world is None else world
    return list(items)[rank::world]


def destroy():
    if is_initialized():
        dist.destroy_process_group()
