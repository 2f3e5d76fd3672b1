"""Optional experiment loggers next to ``metrics.jsonl``: TensorBoard, Weights & Biases.

Off unless configured: ``train.loggers: [tensorboard]`` (or ``[{name: wandb, project: wsss}]``).
Neither package is a dependency of wsss; asking for a logger whose package is missing is a
:class:`~wsss.errors.ConfigError` before training starts. The engine hands every record it
writes to ``metrics.jsonl`` (``kind`` step, epoch, and the tasks' records such as val) to each
logger, on rank 0 only.
A resumed run hides what TensorBoard recorded after the checkpoint's step (as ``metrics.jsonl``
drops it); W&B keeps the records of a killed epoch and ignores their rerun (it refuses steps
lower than those it has).
"""

import importlib
import numbers
import uuid
from pathlib import Path

from ..errors import ConfigError
from ..registry import Registry

LOGGERS = Registry("experiment logger")

#: record fields that are coordinates, not values to plot
COORDINATES = ("kind", "epoch", "step")


def _require(module, package, name):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"train.loggers asks for {name}, but the {package} package is not installed",
                          fix=f"pip install {package}, or remove {name} from train.loggers") from None


def scalars(record):
    """``{"<kind>/<key>": value}`` of a record's numeric values (coordinates left out)."""
    kind = record.get("kind", "step")
    return {f"{kind}/{k}": float(v) for k, v in record.items()
            if k not in COORDINATES and isinstance(v, numbers.Real) and not isinstance(v, bool)}


@LOGGERS.register("tensorboard")
class TensorBoardLogger:
    """Event files in ``<exp>/tensorboard`` (``tensorboard --logdir experiments``)."""

    def __init__(self, exp_dir, cfg, log_dir="tensorboard"):
        self.SummaryWriter = _require("torch.utils.tensorboard", "tensorboard", "tensorboard").SummaryWriter
        self.log_dir = Path(exp_dir) / log_dir
        self.writer = None

    def start(self, resumed, step):
        # purge_step hides the events a killed run wrote after the checkpoint it resumes from
        self.writer = self.SummaryWriter(log_dir=str(self.log_dir), purge_step=step + 1 if resumed else 0)

    def log(self, record):
        for key, value in scalars(record).items():
            self.writer.add_scalar(key, value, global_step=int(record.get("step", 0)))

    def close(self):
        if self.writer is not None:
            self.writer.close()


@LOGGERS.register("wandb")
class WandbLogger:
    """A W&B run in ``<exp>/wandb``; its id is kept in ``<exp>/wandb_id.txt`` so that a resumed
    training continues the same run. Options: ``project`` (wsss), ``entity``, ``mode``
    (online / offline)."""

    def __init__(self, exp_dir, cfg, project="wsss", entity=None, mode=None):
        self.wandb = _require("wandb", "wandb", "wandb")
        self.exp_dir, self.cfg = Path(exp_dir), cfg
        self.settings = {"project": project, "entity": entity, "mode": mode}
        self.run = None

    def start(self, resumed, step):
        id_file = self.exp_dir / "wandb_id.txt"
        if not resumed or not id_file.is_file():
            from ..data.io import write_text

            write_text(id_file, uuid.uuid4().hex[:16])
        run_id = id_file.read_text().strip()
        kw = {k: v for k, v in self.settings.items() if v is not None}
        self.run = self.wandb.init(id=run_id, resume="allow", dir=str(self.exp_dir), name=self.exp_dir.name,
                                   config=self.cfg, **kw)

    def log(self, record):
        self.run.log(scalars(record), step=int(record.get("step", 0)))

    def close(self):
        if self.run is not None:
            self.run.finish()


def build_loggers(specs, exp_dir, cfg):
    """Loggers of ``train.loggers`` (names, or ``{name: ..., options...}`` dicts)."""
    out = []
    for spec in specs or []:
        spec = {"name": spec} if isinstance(spec, str) else dict(spec)
        name = spec.pop("name", None)
        if not name:
            raise ConfigError(f"train.loggers entry {spec} has no name", fix="e.g. train.loggers=[tensorboard]")
        try:
            out.append(LOGGERS.get(name)(exp_dir, cfg, **spec))
        except TypeError as e:
            raise ConfigError(f"bad options for logger {name!r}: {e}",
                              fix="see wsss/engine/loggers.py for each logger's options") from None
    return out
