"""Declared ``method.*`` options of a task: defaults in one place, typos rejected.

A task class lists its keys and defaults in ``options`` (a value, or :class:`Option` with a
help text); a subclass's ``options`` extend and override its parents' (Puzzle -> P-OC ->
P-NOC inherit)::

    class Puzzle(VanillaCAM):
        options = {"alpha": Option(4.0, "final weight of the reconstruction loss")}

:func:`resolve_options` merges a config's ``method`` section over the defaults and raises a
:class:`~wsss.errors.ConfigError` listing the known keys when the section holds another one.
"""

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

#: keys every ``method`` section may hold whatever the task (``name`` picks the task)
COMMON_KEYS = ("name",)


@dataclass(frozen=True)
class Option:
    """A declared option: its default and a one-line help."""

    default: Any = None
    help: str = ""


def _as_option(value):
    return value if isinstance(value, Option) else Option(value)


def declared_options(cls):
    """``{key: Option}`` of ``cls``, merged along its class hierarchy (subclasses win)."""
    out = {}
    for klass in reversed(cls.__mro__):
        for key, value in (klass.__dict__.get("options") or {}).items():
            out[key] = _as_option(value)
    return out


def resolve_options(cls, method_cfg, what=None):
    """The effective ``method`` options of ``cls``: declared defaults <- ``method_cfg``.

    Raises :class:`ConfigError` for an undeclared key, listing the declared ones. ``name`` is
    kept when given."""
    method_cfg = dict(method_cfg or {})
    declared = declared_options(cls)
    unknown = sorted(k for k in method_cfg if k not in declared and k not in COMMON_KEYS)
    if unknown:
        what = what or getattr(cls, "name", None) or cls.__name__
        raise ConfigError(f"unknown option{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join('method.' + k for k in unknown)} for {what}",
                          fix=f"known keys: {', '.join(sorted(declared)) or '(none)'}")
    out = {k: method_cfg[k] for k in COMMON_KEYS if k in method_cfg}
    out.update({k: method_cfg.get(k, opt.default) for k, opt in declared.items()})
    return out


def format_options(cls, method_cfg=None):
    """Lines ``method.key = value  # help`` of the effective options (for ``--list-options``)."""
    values = resolve_options(cls, method_cfg)
    declared = declared_options(cls)
    width = max([len(k) for k in declared] + [1])
    lines = []
    for key in sorted(declared):
        text = f"method.{key:<{width}} = {values[key]!r}"
        lines.append(f"{text}  # {declared[key].help}" if declared[key].help else text)
    return lines
