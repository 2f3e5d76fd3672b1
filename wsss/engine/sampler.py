"""Resumable data order: an epoch's permutation that can start mid-epoch, with per-sample seeds.

Exact mid-epoch resume needs two things a plain ``DistributedSampler`` and per-worker seeding
do not give: the loader must skip the samples of the epoch already trained on, and each
remaining sample must draw the same augmentation as in an uninterrupted run, whichever worker
loads it and however many samples that worker loaded before. So:

- :class:`EpochSampler` yields this rank's share of ``DistributedSampler``'s permutation (same
  order: ``randperm`` seeded with ``seed + epoch``, tail dropped to a multiple of the world
  size), from a given position on, each index paired with a seed derived from (seed, epoch,
  position in the epoch);
- :class:`SeededDataset` loads ``(index, seed)`` items with python's ``random``, numpy's global
  RNG and torch's CPU generator seeded by that seed, and restores the caller's RNG states
  afterwards, so augmentation does not depend on ``num_workers`` and the main process's random
  stream (dropout, ...) is the model's alone.
"""

import contextlib
import random

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

_MASK = (1 << 64) - 1


def mix_seed(*values):
    """A 63-bit seed from integers (splitmix64 over the sequence): distinct inputs, unrelated seeds."""
    z = 0x9E3779B97F4A7C15
    for v in values:
        z = (z ^ (int(v) & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        z = (z ^ (z >> 31)) * 0x94D049BB133111EB & _MASK
        z ^= z >> 29
    return z >> 1


@contextlib.contextmanager
def seeded_rng(seed):
    """Seed python ``random``, numpy's global RNG and torch's CPU generator with ``seed`` inside
    the block; the previous states come back afterwards."""
    py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(th)


class EpochSampler(Sampler):
    """This rank's indices of epoch ``epoch``'s permutation from position ``start`` on, as
    ``(index, sample_seed)`` pairs (see the module docstring). ``num_samples`` is the rank's
    count for a whole epoch."""

    def __init__(self, size, num_replicas=1, rank=0, seed=0):
        self.size, self.num_replicas, self.rank, self.seed = int(size), int(num_replicas), int(rank), int(seed)
        self.num_samples = self.size // self.num_replicas
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch, start=0):
        """Iterate ``epoch`` from this rank's ``start``-th sample (0: the whole epoch)."""
        self.epoch, self.start = int(epoch), int(start)

    def __len__(self):
        return self.num_samples - self.start

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=g).tolist()[:self.num_samples * self.num_replicas]
        for j in range(self.start, self.num_samples):
            pos = j * self.num_replicas + self.rank  # position in the global order
            yield order[pos], mix_seed(self.seed, self.epoch, pos)


class SeededDataset(Dataset):
    """``dataset`` indexed by ``(index, seed)`` pairs: each sample is loaded under
    :func:`seeded_rng` (``seed``)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        index, seed = item
        with seeded_rng(seed):
            return self.dataset[index]
