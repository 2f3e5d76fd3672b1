"""The base class of every trainable stage and the context passed to each training step."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .options import declared_options, resolve_options


@dataclass
class StepContext:
    """Where training stands, handed to :meth:`TaskModule.training_step` and the hooks.

    ``step`` counts optimizer steps already taken (0 at the first step), ``max_step`` is
    their total, ``micro`` the micro-batch index within gradient accumulation, ``batch_size``
    the effective batch of the current epoch (:meth:`TaskModule.epoch_batch_size`),
    ``exp_dir`` the experiment folder and ``log(record)`` the engine's writer of
    ``metrics.jsonl`` records (also fed to the experiment loggers; a no-op off rank 0).
    """

    step: int = 0
    max_step: int = 1
    epoch: int = 0
    epochs: int = 1
    steps_per_epoch: int = 1
    micro: int = 0
    accumulate: int = 1
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cfg: Any = None
    batch_size: int = 0
    exp_dir: Path = None
    log: Any = None

    @property
    def progress(self):
        """Fraction of training done, in [0, 1]."""
        return min(1.0, self.step / max(1, self.max_step))


class TaskModule(nn.Module):
    """A trainable stage: networks + losses, driven by :class:`wsss.engine.Trainer`.

    The contract shared by every stage's registry (CAM methods, saliency, affinity,
    segmentation; CONTRIBUTING.md, "Adding a method or a stage"):

    - built as ``Task(cfg, num_classes)``; ``self.opts`` holds the effective ``method``
      options, declared in the class attribute ``options`` (see :mod:`wsss.engine.options`);
    - :meth:`train_dataset` (a classmethod) builds its training set from the config;
    - ``exports`` names the attributes holding the networks other stages and inference use
      (their ``state_dict`` prefixes in the checkpoint, e.g. ``net.`` -> ``net.backbone.``);
    - :meth:`training_step` computes the losses, :meth:`param_groups` groups the parameters;
    - hooks called by the engine: :meth:`on_train_start`, :meth:`on_epoch_start`,
      :meth:`on_epoch_end`, :meth:`epoch_batch_size` for per-epoch batch sizes and
      :meth:`lr_schedule_steps` for the length of the poly schedule.

    The trainer calls the module itself (``task(batch, ctx)``) so that DDP sees the forward
    pass; :meth:`forward` dispatches to :meth:`training_step`.
    """

    #: the registry name
    name = None
    #: declared ``method.*`` keys and defaults, merged along the class hierarchy
    options = {}
    #: attributes holding the networks that inference and later stages load
    exports = ()
    #: Set True when some trainable parameters get no gradient in some steps (DDP needs to know).
    find_unused_parameters = False
    #: names (prefixes) of trainable parameters that may get no gradient from a training step
    unused_parameters = ()

    def __init__(self, cfg=None, num_classes=None):
        super().__init__()
        self.cfg = cfg if cfg is not None else {}
        self.num_classes = None if num_classes is None else int(num_classes)
        self.opts = self.effective_options(self.cfg)

    # ------------------------------------------------------------------ options
    @classmethod
    def declared_options(cls):
        """``{key: Option}`` of this task (its own and its parents')."""
        return declared_options(cls)

    @classmethod
    def effective_options(cls, cfg):
        """The ``method`` section of ``cfg`` completed with the declared defaults (ConfigError
        on an undeclared key)."""
        return resolve_options(cls, (cfg or {}).get("method"), what=cls.name and f"{cls.name!r}")

    @classmethod
    def from_checkpoint(cls, cfg, num_classes, checkpoint, path=None):
        """The task with the weights of ``checkpoint`` (a path, a checkpoint dict or a state dict)
        loaded strictly. Building it reads no weight file (``model.weights`` / ``backbone_init``:
        the checkpoint holds every weight), so a trained checkpoint alone is enough; ``method``
        keys the task no longer declares (a config saved by an older version) are ignored."""
        from ..backbones import without_pretrained
        from .checkpoint import load_weights
        from .options import COMMON_KEYS

        cfg = without_pretrained(cfg)
        known = set(cls.declared_options()) | set(COMMON_KEYS)
        cfg["method"] = {k: v for k, v in (cfg.get("method") or {}).items() if k in known}
        return load_weights(cls(cfg, num_classes), checkpoint, strict=True, path=path)

    # --------------------------------------------------------------------- data
    @classmethod
    def train_dataset(cls, cfg, data):
        """The training set. ``data`` is the resolved ``cfg["data"]`` (``dataset``, ``root``,
        ``train_split``); other inputs come from the config (e.g. ``method.cam_dir``)."""
        raise NotImplementedError(f"{cls.__name__} does not say which training set it takes")

    # ----------------------------------------------------------------- networks
    def exported(self):
        """``{name: network}`` of :attr:`exports`."""
        return {name: getattr(self, name) for name in self.exports}

    def param_groups(self):
        """``{optimizer name: [{"params": [...], "lr_mult": float, ...}]}``; default: one
        optimizer ``main`` over every trainable parameter at lr x1."""
        return {"main": [{"params": [p for p in self.parameters() if p.requires_grad], "lr_mult": 1.0}]}

    def training_step(self, batch, ctx):
        """Compute the losses of one micro-batch: ``{"loss": tensor, other scalars...}``.

        ``loss`` is backpropagated once; every optimizer of :meth:`param_groups` is zeroed
        before and stepped after. Other entries (detached tensors or floats) are logged.
        A loss that changes at an epoch boundary reads ``ctx.epoch``.
        """
        raise NotImplementedError

    # -------------------------------------------------------------------- hooks
    def on_train_start(self, ctx, resumed):
        """Called once before training (also when the run is already finished), with
        ``ctx.epoch`` the number of finished epochs; ``resumed`` says whether the weights came
        from this experiment's own checkpoint (then whatever a fresh start loads from elsewhere,
        e.g. another experiment's network, must not be loaded again)."""

    def on_epoch_start(self, ctx):
        """Called before each epoch (schedules that switch per epoch)."""

    def on_epoch_end(self, ctx):
        """Called after each epoch's last step (``ctx.epoch`` the epoch just trained), before its
        checkpoint is written; ``ctx.log`` records results (e.g. a validation score)."""

    def epoch_batch_size(self, epoch, batch_size):
        """The effective batch size of ``epoch`` (default: ``train.batch_size`` throughout).
        The engine rebuilds its loader when it changes and counts ``max_step`` over all epochs."""
        return batch_size

    def lr_schedule_steps(self, epoch_steps):
        """The ``max_step`` of the poly learning-rate schedule, given the optimizer steps of each
        epoch (default: their sum, so the lr reaches 0 at the last step). A reference whose
        schedule counts other steps (AEFT's, as if every epoch ran at its first phase's batch)
        returns its own count; ``ctx.max_step`` and ``ctx.progress`` still count the real steps."""
        return sum(epoch_steps)

    def forward(self, batch, ctx):
        return self.training_step(batch, ctx)
