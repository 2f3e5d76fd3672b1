"""torchrun support: process-group setup from the environment, rank helpers, sharding.

``torchrun --nproc_per_node=N tool.py ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
:func:`init_distributed` reads them and joins the group (``nccl`` on CUDA, ``gloo`` on CPU).
Without torchrun everything degrades to a single process (rank 0 of 1).
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


def shard(items, rank=None, world=None):
    """This rank's share of ``items``: every ``world``-th item starting at ``rank``."""
    rank = get_rank() if rank is None else rank
    world = get_world_size() if world is None else world
    return list(items)[rank::world]


def destroy():
    if is_initialized():
        dist.destroy_process_group()
