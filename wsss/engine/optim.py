"""Optimizers, parameter groups and the poly learning-rate schedule.

A task's ``param_groups()`` returns ``{optimizer name: [group dicts]}``; every group has
``params`` and ``lr_mult`` and may fix its own ``weight_decay`` (biases use 0). The trainer
builds one optimizer per name from ``cfg["train"]`` (overridable per name through
``train.optimizers.<name>``) and sets each group's lr to ``base_lr * lr_mult * poly(step)``.
"""

import torch

from ..errors import ConfigError
from ..registry import Registry

OPTIMIZERS = Registry("optimizer")

# Keys of cfg["train"] that an entry of train.optimizers.<name> may override.
OPTIMIZER_KEYS = ("type", "lr", "weight_decay", "momentum", "nesterov", "betas")


def poly_factor(step, max_step, power=0.9):
    """``(1 - step / max_step) ** power``; 0 once ``step >= max_step``."""
    if max_step <= 0 or step >= max_step:
        return 0.0
    return (1.0 - step / max_step) ** power


def _params(modules):
    """Trainable (name, parameter) pairs of a module or a list of modules, no duplicates."""
    if isinstance(modules, torch.nn.Module):
        modules = [modules]
    seen, out = set(), []
    for i, m in enumerate(modules or []):
        for name, p in m.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append((f"{i}.{name}", p))
    return out


def param_groups_4(backbone, new, bias_mult=2.0, new_mult=10.0):
    """The four groups of the reference CAM trainers (docs/methods/backbones.md, "Parameter groups").

    ``backbone`` (pre-trained) weights: lr x1 with weight decay; its biases (any parameter
    whose name lacks "weight", e.g. BatchNorm shifts): lr x2, no decay; ``new`` layers'
    weights: lr x10 with decay; their biases: lr x20, no decay. ``backbone`` and ``new`` are
    modules or lists of modules; frozen parameters (``requires_grad=False``) are skipped and
    a parameter listed in ``new`` is never also put in a backbone group. Empty groups are
    dropped.
    """
    new_params = _params(new)
    new_ids = {id(p) for _, p in new_params}
    bb_params = [(n, p) for n, p in _params(backbone) if id(p) not in new_ids]

    def split(named):
        w = [p for n, p in named if "weight" in n.rsplit(".", 1)[-1]]
        b = [p for n, p in named if "weight" not in n.rsplit(".", 1)[-1]]
        return w, b

    bw, bb = split(bb_params)
    nw, nb = split(new_params)
    groups = [
        {"name": "backbone.weight", "params": bw, "lr_mult": 1.0},
        {"name": "backbone.bias", "params": bb, "lr_mult": bias_mult, "weight_decay": 0.0},
        {"name": "new.weight", "params": nw, "lr_mult": new_mult},
        {"name": "new.bias", "params": nb, "lr_mult": new_mult * bias_mult, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def optimizer_settings(train_cfg, name):
    """Effective settings of optimizer ``name``: ``cfg["train"]`` <- ``train.optimizers.<name>``."""
    over = (train_cfg.get("optimizers") or {}).get(name) or {}
    unknown = set(over) - set(OPTIMIZER_KEYS)
    if unknown:
        raise ConfigError(f"train.optimizers.{name} has unknown keys {sorted(unknown)}",
                          fix=f"use only {', '.join(OPTIMIZER_KEYS)}")
    s = {k: train_cfg.get(k) for k in OPTIMIZER_KEYS if k in train_cfg}
    s.update(over)
    s.setdefault("type", "sgd")
    return s


def build_optimizer(name, groups, settings):
    """One optimizer over ``groups``; each group's base lr is ``settings['lr'] * lr_mult``."""
    if not groups:
        raise ConfigError(f"optimizer {name!r} has no trainable parameters",
                          fix="check param_groups() and requires_grad")
    lr, wd = float(settings["lr"]), float(settings.get("weight_decay", 0.0))
    torch_groups = []
    for g in groups:
        g = dict(g)
        g["params"] = list(g["params"])
        g["lr_mult"] = float(g.get("lr_mult", 1.0))
        g["base_lr"] = lr * g["lr_mult"]
        g["lr"] = g["base_lr"]
        g.setdefault("weight_decay", wd)
        torch_groups.append(g)
    return OPTIMIZERS.get(settings["type"])(torch_groups, settings)


@OPTIMIZERS.register("sgd")
def _sgd(groups, s):
    momentum, nesterov = float(s.get("momentum", 0.0)), bool(s.get("nesterov", False))
    if nesterov and momentum <= 0:
        raise ConfigError("nesterov needs momentum > 0", fix="set train.momentum (e.g. 0.9) or train.nesterov=false")
    # Momentum is passed by keyword: several reference "PolyOptimizer"s pass their third
    # positional argument (weight decay or poly power) into SGD's momentum slot.
    return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum, nesterov=nesterov)


@OPTIMIZERS.register("adam")
def _adam(groups, s):
    """Adam with L2 weight decay added to the gradient (PoolNet's solver)."""
    betas = tuple(s.get("betas") or (0.9, 0.999))
    return torch.optim.Adam(groups, lr=groups[0]["lr"], betas=betas)


@OPTIMIZERS.register("adamw")
def _adamw(groups, s):
    betas = tuple(s.get("betas") or (0.9, 0.999))
    return torch.optim.AdamW(groups, lr=groups[0]["lr"], betas=betas)


def set_poly_lr(optimizer, step, max_step, power=0.9):
    """Set every group's lr to ``base_lr * poly(step)``; return the factor."""
    f = poly_factor(step, max_step, power)
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] * f
    return f
