"""Loading checkpoints into the backbones: strict, after a documented key map.

Accepted files and the key map applied, in order:

1. Reading. MXNet NDArray lists (detected by their magic) go through
   :func:`wsss.backbones.mxnet_params.load_mxnet_params`; anything else through
   ``torch.load(path, map_location="cpu", weights_only=True)``.
2. Unwrapping (torch files). A dict of tensors is the state dict; otherwise the one stored under
   ``state_dict``, ``model`` or ``model_state_dict`` (wsss experiment checkpoints, most public
   repositories).
3. Layout (:func:`split_backbone`). ``module.`` (DataParallel/DDP) is stripped; then the trunk
   is found by P-NOC's code-era rule (docs/hub.md), which also covers plain files and whole wsss
   networks:

   - any ``model.`` key: P-NOC era A (``self.model`` next to ``stage1..5`` aliases), or any other
     network keeping its trunk in ``model``: the ``model.*`` keys;
   - else any ``backbone.<name>`` key whose next part is not a number: P-NOC era C, a wsss
     network, ICAM's DeepLab: the ``backbone.*`` keys;
   - else any ``stage{k}.`` key: P-NOC era B (only the stage aliases were saved): the stages
     renamed to the backbone's own names (:data:`STAGE_MAPS`);
   - else the whole file is the trunk (torchvision, ResNeSt, psa).

   P-NOC's aliases (``stage*``, ``backbone.<digit>.*``, ``edge_layers.*``, ``path_indices_*``)
   are always dropped; the other keys outside the trunk are the network's heads.
4. Family map (``backbone.checkpoint_family``):
   - ``resnet`` (torchvision checkpoints) and ``resnest`` (official ResNeSt): drop ``fc.*``.
   - ``resnet38d``: drop the heads of psa/SEAM/ICAM/CPN/AEFT checkpoints (``fc8``, ``f8_3``,
     ``f8_4``, ``f8_5``, ``f9``, CPN's ``f10``, AEFT's ``fc9``, ``bn8``, ``gconv1..3``); MXNet names are renamed as psa's ``convert_mxnet_to_torch`` does (see
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
HEADS = {
    "resnet": ("fc",),
    "resnest": ("fc",),
    "resnet38d": ("fc8", "f8_3", "f8_4", "f8_5", "f9", "f10", "fc9", "bn8", "gconv1", "gconv2", "gconv3"),
}
_RESNET_STAGES = {"stage1.0.": "conv1.", "stage1.1.": "bn1.",
                  **{f"stage{k}.0.": f"layer{k - 1}." for k in range(2, 6)}}
#: P-NOC era B (2023-10 .. 2024-03): the ``nn.Sequential`` stage aliases -> the backbone's names.
STAGE_MAPS = {
    "resnet": _RESNET_STAGES,
    "resnest": _RESNET_STAGES,
    "resnet38d": {f"stage{s}.{i}.": f"{name}." for s, names in enumerate((
        ("conv1a", "b2", "b2_1", "b2_2"), ("b3", "b3_1", "b3_2"), ("b4", "b4_1", "b4_2", "b4_3", "b4_4", "b4_5"),
        ("b5", "b5_1", "b5_2"), ("b6", "b7", "bn7")), start=1) for i, name in enumerate(names)},
}
_ALIAS = re.compile(r"^(stage\d+\.|backbone\.\d+\.|edge_layers\.|path_indices_)")
_ERA_C = re.compile(r"^backbone\.[^\d.]")
_STAGE = re.compile(r"^stage\d+\.")
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


def split_backbone(state, family, path=None):
    """Step 3 of the module docstring on a torch state dict: ``(trunk, heads, dropped, layout)``.

    ``trunk`` holds the backbone's weights under its own names (still with any ``fc`` / ``fc8``
    head of its family, see :func:`map_keys`), ``heads`` the network's other keys as stored,
    ``dropped`` P-NOC's alias keys, ``layout`` one of ``model`` (P-NOC era A), ``backbone`` (era C),
    ``stages`` (era B), ``plain``.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("model.") for k in state):
        layout, rename = "model", _prefix_rename({"model.": ""})
    elif any(_ERA_C.match(k) for k in state):
        layout, rename = "backbone", lambda k: k[len("backbone."):] if _ERA_C.match(k) else None
    elif any(_STAGE.match(k) for k in state):
        if family not in STAGE_MAPS:
            raise CheckpointError(f"stage-alias checkpoints (P-NOC 2023-10 .. 2024-03) cannot be mapped to a {family} "
                                  "backbone", path=path, fix=f"use a {' / '.join(STAGE_MAPS)} backbone")
        layout, rename = "stages", _prefix_rename(STAGE_MAPS[family])
        stray = [k for k in state if _STAGE.match(k) and rename(k) is None]
        if stray:
            raise CheckpointError(f"stage keys that no {family} stage map covers ({', '.join(stray[:_SHOWN])})",
                                  path=path, fix="check model.backbone: the file is of another architecture")
    else:
        own_heads = HEADS.get(family, ())
        layout, rename = "plain", lambda k: None if k.split(".")[0] in own_heads else k
    trunk, heads, dropped = {}, {}, []
    for k, v in state.items():
        new = rename(k)
        if new is not None:
            trunk[new] = v
        elif _ALIAS.match(k):
            dropped.append(k)
        else:
            heads[k] = v
    return trunk, heads, dropped, layout


def _prefix_rename(table):
    """``key -> renamed key`` for keys starting with a prefix of ``table`` (``None`` for others)."""
    def rename(k):
        prefix = next((p for p in table if k.startswith(p)), None)
        return None if prefix is None else table[prefix] + k[len(prefix):]

    return rename


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
    trunk, heads, dropped, _ = split_backbone(state, family, path)
    dropped += list(heads)
    own_heads = HEADS.get(family, ())
    dropped += [k for k in trunk if k.split(".")[0] in own_heads]
    return {k: v for k, v in trunk.items() if k.split(".")[0] not in own_heads}, dropped


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
