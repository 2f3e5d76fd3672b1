"""Helpers shared by the ``tools/*.py`` entry points."""

import sys
import time

from .errors import WSSSError


def run_main(main):
    """Run ``main()``; turn :class:`WSSSError` into a one-paragraph message and exit code 2."""
    try:
        code = main()
    except WSSSError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept, rerun to resume", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


class Timer:
    """Wall-clock seconds since construction, for the one-line stage summaries."""

    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self):
        return time.perf_counter() - self.start


def resolve_data(cfg, root=None, config_path=None):
    """Fill ``cfg["data"]``: ``root`` (from ``--data`` when given) and the dataset name
    ``dataset`` (``data.name`` is read as its alias; ``auto`` is detected from the root's
    layout); returns the data section."""
    from .data import detect_dataset
    from .errors import ConfigError

    data = cfg.setdefault("data", {})
    if root:
        data["root"] = str(root)
    if not data.get("root"):
        raise ConfigError("no dataset root", path=config_path, fix="pass --data DIR or set data.root")
    if "dataset" not in data and data.get("name"):
        data["dataset"] = data["name"]
    if data.get("dataset", "auto") == "auto":
        data["dataset"] = detect_dataset(data["root"])
    return data
