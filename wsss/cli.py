"""Helpers shared by the ``tools/*.py`` entry points."""

import errno
import re
import sys
from pathlib import Path
import time

from .errors import EXIT_BAD_INPUT, EXIT_PREEMPTED, Preempted, WSSSError


def run_main(main):
    """Run ``main()``; turn :class:`WSSSError` into a one-paragraph message and exit code 2
    (:data:`~wsss.errors.EXIT_BAD_INPUT`), :class:`~wsss.errors.Preempted` (a training run
    stopped by SIGTERM/SIGUSR1 after its checkpoint) into exit code 75
    (:data:`~wsss.errors.EXIT_PREEMPTED`). An OSError of writing (disk full, no permission,
    read-only disk: :data:`WRITE_FIXES`) is also a one-paragraph message with exit code 2."""
    try:
        code = main()
    except Preempted as e:
        print(f"stopped: {e}", file=sys.stderr)
        sys.exit(EXIT_PREEMPTED)
    except WSSSError as e:
        print(f"error: {worker_message(e)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except OSError as e:
        if e.errno not in WRITE_FIXES:
            raise
        where = f"{final_name(e.filename)}: " if e.filename else ""
        print(f"error: {where}cannot write ({e.strerror or e})\n  fix: {WRITE_FIXES[e.errno]}; "
              "finished outputs are kept, rerun to resume", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept, rerun to resume", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


#: OSErrors of writing outputs that are the user's to fix (exit 2, no traceback), with the fix
WRITE_FIXES = {
    errno.ENOSPC: "free space on that disk or write the outputs elsewhere",
    errno.EDQUOT: "free space within your quota or write the outputs elsewhere",
    errno.EACCES: "choose an output folder you may write to (--out / --exp)",
    errno.EPERM: "choose an output folder you may write to (--out / --exp)",
    errno.EROFS: "the disk is read-only: choose another output folder (--out / --exp)",
    errno.ENOTDIR: "a part of the output path is a file: choose another output folder (--out / --exp)",
}


def final_name(path):
    """The output a temporary file of ``wsss.data.io.atomic_path`` (``.<name>.<host>-<pid>.<random>.tmp...``)
    was written for; other paths unchanged."""
    from .data.io import TEMPORARY

    path = Path(str(path))
    m = TEMPORARY.fullmatch(path.name)
    return str(path.with_name(m["name"])) if m else str(path)


def worker_message(error):
    """The message of ``error``; for one re-raised from a DataLoader worker (whose text torch
    prefixes with "Caught ... in DataLoader worker process N" and the worker's traceback), only
    the original error's own message."""
    text = str(error)
    if "DataLoader worker process" not in text or "Traceback" not in text:
        return text
    name = type(error).__name__
    for prefix in (f"{type(error).__module__}.{name}: ", f"{name}: "):
        at = text.rfind("\n" + prefix)
        if at >= 0:
            return text[at + 1 + len(prefix):].rstrip()
    return text


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
