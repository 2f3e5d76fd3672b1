"""Benchmark-only stand-in for ``wandb`` (Weights & Biases): every call is a no-op and nothing
is logged or sent anywhere. Covers what P-NOC's scripts call: ``init`` (returns a run with
``summary``, ``config``, ``log`` and ``finish``), ``log``, ``define_metric``, ``Image``, ``Table``
and ``run``."""

__version__ = "0.0.0+wsss.benchmark.shim"
__all__ = ["Image", "Run", "Table", "define_metric", "finish", "init", "log", "run"]

run = None


class Run:
    """What ``init`` returns: a ``summary`` dict and a ``config``, no-op ``log`` and ``finish``."""

    def __init__(self, name=None, config=None, **kwargs):
        self.name, self.config, self.summary, self.id = name, config, {}, "offline"

    def log(self, *args, **kwargs):
        """Discard the record."""

    def finish(self, *args, **kwargs):
        """Nothing to close."""


def init(*args, **kwargs):
    """Start a no-op run (also reachable as ``wandb.run``)."""
    global run
    run = Run(**{k: v for k, v in kwargs.items() if k in ("name", "config")})
    return run


def log(*args, **kwargs):
    """Discard the record."""


def define_metric(*args, **kwargs):
    """Nothing to define."""


def finish(*args, **kwargs):
    """Nothing to close."""


class Image:
    """Accepts an image and drops it."""

    def __init__(self, *args, **kwargs):
        pass


class Table:
    """Accepts columns and rows and drops them."""

    def __init__(self, columns=None, data=None, **kwargs):
        self.columns = columns

    def add_data(self, *row):
        """Drop the row."""
