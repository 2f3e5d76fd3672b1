"""Seeding: one call for python, numpy and torch; per-worker seeds for DataLoader workers."""

import random
import signal

import numpy as np
import torch


def seed_everything(seed):
    """Seed python ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def worker_init_fn(worker_id):
    """Seed numpy and ``random`` in a DataLoader worker from the seed torch gave the worker, and
    make the worker ignore the stop signals.

    torch derives each worker's seed from the loader's generator, so seeding that generator
    (see :func:`loader_seed`) makes every augmentation reproducible. A scheduler that signals the
    whole process group (SIGTERM, SIGUSR1) must not kill the workers before the main process has
    written its checkpoint; the main process ends them itself.
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    for name in ("SIGTERM", "SIGUSR1"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def loader_seed(seed, epoch, rank=0):
    """A distinct, reproducible seed for the loader generator of one (epoch, rank)."""
    return (int(seed) * 1_000_003 + int(epoch) * 1_009 + int(rank)) % 2**63


def get_rng_state():
    """The global RNG states as plain types and tensors (safe for ``torch.load(weights_only=True)``)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
