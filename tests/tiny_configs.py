"""The tiny configs of ``tests/configs`` (see its README.md) with their placeholders filled."""

from pathlib import Path

from wsss.config import load_config

CONFIGS = Path(__file__).resolve().parent / "configs"


def fill(obj, values):
    """``obj`` with every ``{key}`` of its strings replaced by ``values[key]``."""
    if isinstance(obj, dict):
        return {k: fill(v, values) for k, v in obj.items()}
    if isinstance(obj, str):
        for k, v in values.items():
            obj = obj.replace("{" + k + "}", str(v))
    return obj


def tiny(stage, name, values):
    """The config ``tests/configs/<stage>/<name>.yaml``, placeholders filled from ``values``."""
    path = CONFIGS / stage / f"{name}.yaml"
    assert path.is_file(), f"{stage} task {name!r} has no tiny config {path} (see tests/configs/README.md)"
    return fill(load_config(path), values)
