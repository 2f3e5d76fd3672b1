"""Checkpoints: atomic save, safe load, weight loading with clear architecture errors.

A training checkpoint (``checkpoints/last.pth``) is a dict with ``state_dict``, ``config``,
``epoch`` (completed epochs), ``step`` (optimizer steps), ``optimizers``, ``scaler``, ``rng``
(one entry per rank), ``world_size``, ``train_seconds`` and ``format``. Everything in it is a
tensor or a plain Python value, so it loads with ``torch.load(weights_only=True)``.
"""

from pathlib import Path

import torch

from ..data.io import atomic_path
from ..errors import CheckpointError

FORMAT = "wsss-checkpoint-1"


def save_checkpoint(path, state):
    """Atomically write ``state`` with ``torch.save`` (a killed run leaves the old file intact)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path, map_location="cpu"):
    """Read a checkpoint; a missing or truncated file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint not found", path=path,
                              fix="train first (tools/train_cam.py) or pass the right --exp")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle of unknown objects, ...
        raise CheckpointError(f"cannot read checkpoint ({type(e).__name__}: {e})", path=path,
                              fix="delete it and retrain, or point to an intact file") from None


def extract_state_dict(obj):
    """The model weights inside a checkpoint dict (``state_dict``/``model`` key) or the dict itself,
    with DataParallel/DDP ``module.`` prefixes removed."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_weights(module, source, strict=True, path=None):
    """Load weights into ``module`` from a checkpoint path or dict.

    A mismatch (another architecture, number of classes, backbone width) raises
    :class:`CheckpointError` naming a few missing/unexpected/mis-shaped keys.
    """
    if isinstance(source, (str, Path)):
        path = source
        source = load_checkpoint(source)
    state = extract_state_dict(source)
    own = module.state_dict()
    shape = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if shape or (strict and (missing or unexpected)):
        def few(keys):
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
        parts = [f"{name}: {few(keys)}" for name, keys in
                 (("shape mismatch", shape), ("missing", missing), ("unexpected", unexpected)) if keys]
        raise CheckpointError("checkpoint does not fit this model (" + "; ".join(parts) + ")", path=path,
                              fix="use the config the checkpoint was trained with (its config.yaml)")
    module.load_state_dict(state, strict=strict)
    return module
