"""A network from another experiment: P-NOC's ordinary classifier, a backbone from a prior
stage (``model.backbone_init``), later SP-CAM's superpixel network.

:func:`load_network` loads ``module`` from the ``state_dict`` of another experiment's
checkpoint, found under a prefix (the exporting task's attribute, e.g. ``net.`` of a CAM
experiment, ``net.backbone.`` for its backbone; ``None`` finds the one prefix that holds every
weight of ``module``). :func:`check_experiment` validates the source first and cheaply: the
folder and its files exist, its training finished, and its architecture (the ``model`` keys
``arch_keys`` of its ``config.yaml``) equals the one this run builds.
"""

from pathlib import Path

from ..errors import CheckpointError
from .checkpoint import extract_state_dict, load_checkpoint, load_weights

#: ``model`` keys that decide whether a trained network fits the one a run builds
ARCH_KEYS = ("backbone", "backbone_kwargs")


def experiment_checkpoint(source):
    """``source`` itself when it is a checkpoint file, else ``<source>/checkpoints/last.pth``."""
    source = Path(source)
    return source / "checkpoints" / "last.pth" if source.is_dir() else source


def check_experiment(exp_dir, model_cfg=None, arch_keys=ARCH_KEYS, kind="", fix=""):
    """Check that ``exp_dir`` is a finished experiment whose ``config.yaml``'s ``model`` agrees
    with ``model_cfg`` on ``arch_keys``; returns its checkpoint path.

    ``kind`` names the expected experiment in messages (e.g. ``CAM``); ``fix`` says how to make
    one."""
    from ..config import read_yaml

    exp_dir = Path(exp_dir)
    cfg_path, ckpt = exp_dir / "config.yaml", experiment_checkpoint(exp_dir)
    what = f"{kind} experiment" if kind else "experiment"
    if not exp_dir.is_dir() or not cfg_path.is_file() or not ckpt.is_file():
        raise CheckpointError(f"not a finished {what} (config.yaml or checkpoints/last.pth missing)",
                              path=exp_dir, fix=fix or "train it first")
    if model_cfg is not None:
        trained = read_yaml(cfg_path).get("model") or {}
        differ = [k for k in arch_keys if (trained.get(k) or None) != (model_cfg.get(k) or None)]
        if differ:
            got = ", ".join(f"{k}={trained.get(k)!r}" for k in differ)
            want = ", ".join(f"{k}={model_cfg.get(k)!r}" for k in differ)
            raise CheckpointError(f"the {what} was trained with {got}, this run builds it with {want}",
                                  path=cfg_path, fix=fix or "build the network with the trained architecture")
    return ckpt


def find_prefix(state, module, path=None, what="network", prefix_key="the prefix"):
    """The one prefix under which ``state`` holds every key of ``module``'s state dict (``None``
    when there is none; several are an error naming ``prefix_key``, the setting to choose)."""
    own = list(module.state_dict())
    found = sorted(p for p in {k[: -len(own[0])] for k in state if k.endswith(own[0])}
                   if all(p + k in state for k in own))
    if len(found) > 1:
        raise CheckpointError(f"the checkpoint holds several {what}s ({', '.join(found)})", path=path,
                              fix=f"choose one with {prefix_key}=<prefix>")
    return found[0] if found else None


def load_network(module, source, prefix=None, finished=False, what="network", prefix_key="the prefix", fix=None):
    """Load ``module`` (strict) from the checkpoint of ``source`` (an experiment folder or a
    checkpoint file) under ``prefix`` (``None``: found, see :func:`find_prefix`).

    ``finished``: refuse a training checkpoint whose run has not reached ``train.epochs``.
    ``what`` (e.g. ``backbone``) and ``prefix_key`` (the setting that picks a prefix) word the
    error messages."""
    path = experiment_checkpoint(source)
    ckpt = load_checkpoint(path)
    if finished:
        epochs = ((ckpt.get("config") or {}).get("train") or {}).get("epochs")
        if epochs is not None and int(ckpt.get("epoch", 0)) < int(epochs):
            raise CheckpointError(f"its training is not finished (epoch {ckpt.get('epoch')} of {epochs})",
                                  path=path, fix=fix or "finish it (rerun its training command: it resumes)")
    state = extract_state_dict(ckpt)
    if prefix is None:
        prefix = find_prefix(state, module, path, what, prefix_key)
    if prefix is None or not any(k.startswith(prefix) for k in state):
        where = f" under {prefix!r}" if prefix else ""
        raise CheckpointError(f"no complete set of this {what}'s weights{where}", path=path,
                              fix=fix or "point to a checkpoint that holds the same network")
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return load_weights(module, sub, strict=True, path=path)
