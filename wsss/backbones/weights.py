"""Loading checkpoints into the backbones: strict, after a documented key map.

Accepted files and the key map applied, in order:

1. Reading. MXNet NDArray lists (detected by their magic) go through
   :func:`wsss.backbones.mxnet_params.load_mxnet_params`; anything else through
   ``torch.load(path, map_location="cpu", weights_only=True)``.
2. Unwrapping (torch files). A dict of tensors is the state dict; otherwise the one stored under
   ``state_dict``, ``model`` or ``model_state_dict`` (wsss experiment checkpoints, most public
   repositories).
3. Prefixes. ``module.`` (DataParallel/DDP) is stripped; when any key starts with ``backbone.``
   (a whole wsss network) or else with ``model.`` (P-NOC's networks keep their trunk in
   ``self.model``, next to ``stage1..5`` aliases and heads), only those keys are kept, without
   the prefix.
4. Family map (``backbone.checkpoint_family``):
   - ``resnet`` (torchvision checkpoints) and ``resnest`` (official ResNeSt): drop ``fc.*``.
   - ``resnet38d``: drop the heads of psa/SEAM checkpoints (``fc8``, ``f8_3``, ``f8_4``, ``f8_5``,
     ``f9``); MXNet names are renamed as psa's ``convert_mxnet_to_torch`` does (see
     :func:`mxnet_resnet38_name`), ``linear1000_*`` (the ImageNet classifier) dropped.
5. Check. Every key and shape must equal the backbone's state dict; only BatchNorm's
   ``num_batches_tracked`` may be absent (torchvision and converted files lack it). Anything else
   raises :class:`~wsss.errors.CheckpointError` naming the file and the first offending keys;
   then ``load_state_dict(strict=True)``.
"""

import re
from pathlib import Path

import torch

from ..errors import CheckpointError
from .mxnet_params import is_mxnet_params, load_mxnet_params

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
SUBNET_PREFIXES = ("backbone.", "model.")
HEADS = {
    "resnet": ("fc",),
    "resnest": ("fc",),
    "resnet38d": ("fc8", "f8_3", "f8_4", "f8_5", "f9"),
}
_SHOWN = 5

_MX_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_var": "running_var"}
_MX_BLOCK = re.compile(r"(res|bn)(\d)(a|b(\d+))_(branch\w+?)_(weight|gamma|beta|moving_mean|moving_var)")
_MX_BN7 = re.compile(r"bn7_(gamma|beta|moving_mean|moving_var)")


def mxnet_resnet38_name(name):
    """psa's name for an MXNet ResNet-38 array name, ``None`` for the ImageNet classifier.

    ``arg:``/``aux:`` prefixes are ignored. ``res{s}a_branch{x}_weight`` -> ``b{s}.conv_branch{x}.weight``,
    ``res{s}b{k}_...`` -> ``b{s}_{k}.conv_...``; ``bn{s}a_branch{x}_{gamma,beta,moving_mean,moving_var}``
    -> ``b{s}.bn_branch{x}.{weight,bias,running_mean,running_var}``; ``bn7_*`` -> ``bn7.*``;
    ``conv1a_weight`` -> ``conv1a.weight``; ``linear1000_*`` -> ``None``. Other names come back
    unchanged (and then fail the strict check as unexpected keys).
    """
    bare = re.sub(r"^(arg|aux):", "", name)
    if bare == "conv1a_weight":
        return "conv1a.weight"
    if bare.startswith("linear1000_"):
        return None
    m = _MX_BN7.fullmatch(bare)
    if m:
        return f"bn7.{_MX_BN[m[1]]}"
    m = _MX_BLOCK.fullmatch(bare)
    if m is None:
        return name
    kind, stage, sub, k, branch, suffix = m.groups()
    block = f"b{stage}" if sub == "a" else f"b{stage}_{k}"
    if kind == "res" and suffix == "weight":
        return f"{block}.conv_{branch}.weight"
    if kind == "bn" and suffix in _MX_BN:
        return f"{block}.bn_{branch}.{_MX_BN[suffix]}"
    return name


MXNET_MAPS = {"resnet38d": mxnet_resnet38_name}


def read_checkpoint(path):
    """``(tensors, format)``: the file's state dict (unwrapped, names as stored) and ``"torch"``
    or ``"mxnet"``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path=path,
                              fix="check model.weights (download the ImageNet weights first, see SETUP.md)")
    if is_mxnet_params(path):
        arrays = load_mxnet_params(path)
        return {k: None if v is None else torch.from_numpy(v) for k, v in arrays.items()}, "mxnet"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, garbage, pickled objects weights_only refuses, ...
        raise CheckpointError(f"cannot read checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                              path=path, fix="re-download or re-save it; it must hold a state dict of tensors"
                              ) from None
    for _ in range(len(WRAPPER_KEYS)):
        if _is_tensor_dict(obj) or not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not _is_tensor_dict(obj):
        raise CheckpointError("no state dict found in checkpoint", path=path,
                              fix=f"save a dict of tensors, or one under {' / '.join(WRAPPER_KEYS)}")
    return dict(obj), "torch"


def _is_tensor_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def map_keys(state, fmt, family, path=None):
    """Apply steps 3-4 of the module docstring; returns ``(state, dropped_keys)``."""
    dropped = []
    if fmt == "mxnet":
        if family not in MXNET_MAPS:
            raise CheckpointError(f"an MXNet .params file cannot be loaded into a {family} backbone", path=path,
                                  fix="MXNet weights exist for resnet38d only; pass a PyTorch checkpoint")
        rename, renamed = MXNET_MAPS[family], {}
        for k, v in state.items():
            new = rename(k)
            if new is None:
                dropped.append(k)
            else:
                renamed[new] = v
        return renamed, dropped
    state = {k.removeprefix("module."): v for k, v in state.items()}
    prefix = next((p for p in SUBNET_PREFIXES if any(k.startswith(p) for k in state)), None)
    if prefix:
        dropped += [k for k in state if not k.startswith(prefix)]
        state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    heads = HEADS.get(family, ())
    dropped += [k for k in state if k.split(".")[0] in heads]
    return {k: v for k, v in state.items() if k.split(".")[0] not in heads}, dropped


def check_state_dict(model, state, path=None, name=None):
    """Raise :class:`CheckpointError` unless ``state`` has exactly ``model``'s keys and shapes
    (``num_batches_tracked`` may be absent)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: file {_shape(state[k])}, model {tuple(expected[k].shape)}"
             for k in state if k in expected and _shape(state[k]) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{len(keys)} {what} ({', '.join(keys[:_SHOWN])}{', ...' if len(keys) > _SHOWN else ''})"
                 for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                    ("shape mismatches", wrong)) if keys]
        raise CheckpointError(f"checkpoint does not fit backbone {name or type(model).__name__}: " + "; ".join(parts),
                              path=path, fix="pass the checkpoint of this architecture (torchvision ResNet, official "
                                             "ResNeSt, psa ResNet-38) or change model.backbone to match it")


def _shape(t):
    return None if t is None else tuple(t.shape)


def load_weights(model, path, name=None):
    """Load a checkpoint into a backbone strictly (see the module docstring); returns a report
    ``{"path", "format", "loaded", "dropped"}``."""
    state, fmt = read_checkpoint(path)
    state, dropped = map_keys(state, fmt, model.checkpoint_family, path)
    check_state_dict(model, state, path, name)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"loading failed: {str(e).splitlines()[0][:300]}", path=path,
                              fix="pass the checkpoint of this architecture") from None
    return {"path": str(path), "format": fmt, "loaded": len(state), "dropped": dropped}
