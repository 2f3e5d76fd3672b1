"""The base class of every trainable stage and the context passed to each training step."""

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class StepContext:
    """Where training stands, handed to :meth:`TaskModule.training_step`.

    ``step`` counts optimizer steps already taken (0 at the first step), ``max_step`` is
    their total, ``micro`` the micro-batch index within gradient accumulation.
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

    @property
    def progress(self):
        """Fraction of training done, in [0, 1]."""
        return min(1.0, self.step / max(1, self.max_step))


class TaskModule(nn.Module):
    """A trainable stage: networks + losses, driven by :class:`wsss.engine.Trainer`.

    Subclasses implement :meth:`training_step` and, for more than one lr multiplier or more
    than one optimizer, :meth:`param_groups`. The trainer calls the module itself
    (``task(batch, ctx)``) so that DDP sees the forward pass; :meth:`forward` dispatches to
    :meth:`training_step`.
    """

    #: Set True when some trainable parameters get no gradient in some steps (DDP needs to know).
    find_unused_parameters = False

    def param_groups(self):
        """``{optimizer name: [{"params": [...], "lr_mult": float, ...}]}``; default: one
        optimizer ``main`` over every trainable parameter at lr x1."""
        return {"main": [{"params": [p for p in self.parameters() if p.requires_grad], "lr_mult": 1.0}]}

    def training_step(self, batch, ctx):
        """Compute the losses of one micro-batch: ``{"loss": tensor, other scalars...}``.

        ``loss`` is backpropagated once; every optimizer of :meth:`param_groups` is zeroed
        before and stepped after. Other entries (detached tensors or floats) are logged.
        """
        raise NotImplementedError

    def on_epoch_start(self, ctx):
        """Hook called before each epoch (schedules that switch per epoch)."""

    def forward(self, batch, ctx):
        return self.training_step(batch, ctx)
