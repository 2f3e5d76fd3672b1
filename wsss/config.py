"""YAML configs with dotted ``key=value`` command-line overrides.

A config is a nested dict. ``load_config(path, ["train.lr=0.01", "model.backbone=resnet50"])``
reads the file, applies ``_base_`` inheritance (a path relative to the file) and the overrides
(values parsed as YAML), and returns the effective config that every stage saves next to its
outputs with :func:`save_config`.
"""

import copy
from pathlib import Path

import yaml

from .errors import ConfigError
from .data.io import write_text


def merge(base, override):
    """Recursively merge ``override`` into a copy of ``base``."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_yaml(path):
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", path=path, fix="pass an existing configs/<dataset>/<method>.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML ({e})", path=path) from None
    if not isinstance(data, dict):
        raise ConfigError("config must be a mapping", path=path)
    base = data.pop("_base_", None)
    if base:
        data = merge(read_yaml(path.parent / base), data)
    return data


def set_dotted(cfg, key, value):
    """Set ``cfg["a"]["b"] = value`` for ``key="a.b"``, creating levels as needed."""
    node = cfg
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set {key!r}: {p!r} is not a mapping")
        node = nxt
    node[parts[-1]] = value


def get_dotted(cfg, key, default=None):
    node = cfg
    for p in key.split("."):
        if not isinstance(node, dict) or p not in node:
            return default
        node = node[p]
    return node


def apply_overrides(cfg, overrides):
    """Apply ``key=value`` strings (value parsed as YAML) to a copy of ``cfg``."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value", fix="write e.g. train.lr=0.01")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        set_dotted(cfg, key.strip(), value)
    return cfg


def load_config(path=None, overrides=None, defaults=None):
    """Effective config: ``defaults`` <- file at ``path`` <- ``overrides``."""
    cfg = copy.deepcopy(defaults or {})
    if path is not None:
        cfg = merge(cfg, read_yaml(path))
    return apply_overrides(cfg, overrides)


def save_config(cfg, path):
    """Atomically write the effective config as YAML."""
    write_text(path, yaml.safe_dump(cfg, sort_keys=False))
