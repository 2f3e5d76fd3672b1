"""BatchNorm modes of the backbones: trained, or frozen to its running statistics.

``norm_mode`` (``build_backbone``):

- ``train``: plain ``nn.BatchNorm2d``.
- ``frozen``: every BN normalises with its running statistics and never updates them, also
  after ``.train()``; its affine weight and bias stay trainable (used where the whole backbone
  is frozen anyway, e.g. AffinityNet, and where only the statistics should stay fixed).
- ``frozen_affine``: as ``frozen`` and the affine weight and bias get ``requires_grad=False``
  too. This is P-NOC's "fix" mode (``FixedBatchNorm`` plus ``set_trainable_layers(...,
  BatchNorm2d, False)``: the ordinary classifier, AffinityNet) and psa/SEAM's ``Net.train()``
  (ResNet-38 methods: ICAM, CPN, AEFT). See ``docs/methods/backbones.md``.

Frozen layers are :class:`FrozenBatchNorm2d`, a ``BatchNorm2d`` subclass with the same
parameter and buffer names, so checkpoints load unchanged in every mode.
"""

from functools import partial

from torch import nn

from ..registry import Registry


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A ``BatchNorm2d`` that stays in eval mode: ``.train()`` cannot switch it back."""

    def __init__(self, num_features, *args, trainable_affine=True, **kwargs):
        super().__init__(num_features, *args, **kwargs)
        self.training = False
        if not trainable_affine and self.affine:
            self.weight.requires_grad_(False)
            self.bias.requires_grad_(False)

    def train(self, mode=True):
        return super().train(False)


NORM_MODES = Registry("norm_mode")
NORM_MODES.register("train")(nn.BatchNorm2d)
NORM_MODES.register("frozen")(FrozenBatchNorm2d)
NORM_MODES.register("frozen_affine")(partial(FrozenBatchNorm2d, trainable_affine=False))


def norm_layer(mode):
    """The BatchNorm factory ``f(num_features)`` of a ``norm_mode`` name."""
    return NORM_MODES.get(mode)


def freeze_batchnorm(module, trainable_affine=True):
    """Replace every ``BatchNorm2d`` inside ``module`` by a :class:`FrozenBatchNorm2d` with the
    same state, in place; returns ``module`` (for heads built outside this package)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, FrozenBatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum,
                                       affine=child.affine, track_running_stats=child.track_running_stats,
                                       device=_device_of(child), trainable_affine=trainable_affine)
            frozen.load_state_dict(child.state_dict())
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child, trainable_affine)
    return module


def _device_of(module):
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return None
