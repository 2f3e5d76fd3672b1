"""The random-walk stage: affinity labels, AffinityNet (IRN boundary head or psa's), sparse random walk.

    labels.py       affinity labels from CAMs (+ saliency) and dense CRF (LABEL_RULES)
    pairs.py        pixel pairs within a radius, affinities from a boundary map
    net.py          IRN's AffinityNet, its loss, AffinityTask (training through wsss.engine)
    psa.py          psa's AffinityNet (feature affinities), PsaAffinityTask, its walk inputs
    random_walk.py  T = column-normalised A^beta applied 2^logt times by sparse products

Trainable tasks register in ``AFFINITY_TASKS`` (``irn``: IRN's boundary AffinityNet, the
default; ``psa``: psa's feature AffinityNet), found by ``tools/train_affinity.py --method`` or
the config's ``method.name``; each task class also provides ``build_net``, ``walk_cams`` and
``walk`` for tools/infer_rw.py. Names are imported lazily so that CRF worker processes
(which only need ``labels``) do not pay for torch and the engine: the registry imports this
package's modules at its first lookup.
"""

import importlib

from ..registry import Registry

AFFINITY_TASKS = Registry("affinity task", package=__name__)

_EXPORTS = {
    "LABEL_RULES": "labels", "affinity_labels": "labels", "rule_params": "labels", "combine_confident": "labels",
    "PairIndex": "pairs", "search_offsets": "pairs", "path_cells": "pairs", "grid_affinities": "pairs",
    "AffinityNet": "net", "AffinityTask": "net", "affinity_loss": "net", "build_affinity_net": "net",
    "PsaAffinityNet": "psa", "PsaAffinityTask": "psa", "build_psa_net": "psa",
    "RW_PRESETS": "random_walk", "propagate": "random_walk",
    "transition_matrix": "random_walk",
}

__all__ = sorted([*_EXPORTS, "AFFINITY_TASKS"])


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
