"""Backbones with the public checkpoints' parameter names: ``build_backbone(name, ...)``.

Every backbone's ``forward(x)`` returns a dict of feature maps: ``c1`` (stride 2), ``c2`` (4),
``c3`` (8), ``c4`` (16, or 8 at output stride 8), ``c5`` (the output stride); resnet38d adds the
pre-activations ``b4_pre``, ``b5_pre``, ``b6_pre`` (psa's conv3/conv4/conv5). ``.channels`` and
``.strides`` give each entry's width and stride, ``.output_stride``, ``.norm_mode`` and ``.name``
describe the build.
"""

import inspect

from ..errors import ConfigError
from ..registry import Registry
from . import resnest, resnet, resnet38d
from .from_config import PRETRAINED_KEYS, backbone_from_config, init_backbone, without_pretrained
from .norm import FrozenBatchNorm2d, freeze_batchnorm, norm_layer
from .weights import load_weights

BACKBONES = Registry("backbone")
for _module, _names in ((resnet, ("resnet18", "resnet50", "resnet101")),
                        (resnest, ("resnest50", "resnest101", "resnest200", "resnest269"))):
    for _name in _names:
        BACKBONES.register(_name)(getattr(_module, _name))
BACKBONES.register("resnet38d")(resnet38d.ResNet38d)


def build_backbone(name, output_stride=16, norm_mode="train", weights=None, **kw):
    """Build backbone ``name`` at ``output_stride`` (8/16/32; resnet38d: 8) with BatchNorm mode
    ``norm_mode`` (``train`` | ``frozen`` (P-NOC "fix") | ``frozen_affine`` (psa); see
    :mod:`wsss.backbones.norm`), then load ``weights`` (a checkpoint path) strictly.

    Extra keyword options: ``width`` (resnet18 base width, 64 = torchvision), ``trainable_conv1a``
    (resnet38d, default False as in psa) and ``dropouts`` (resnet38d: the b6 / b7 Dropout2d rates,
    psa 0.3 / 0.5, AEFT 0.2 / 0.2).
    """
    factory = BACKBONES.get(name)
    accepted = set(inspect.signature(factory).parameters) - {"output_stride", "norm_layer"}
    unknown = sorted(set(kw) - accepted)
    if unknown:
        raise ConfigError(f"backbone {name!r} has no option {', '.join(unknown)}",
                          fix=f"options of {name}: {', '.join(sorted(accepted)) or 'none'}")
    model = factory(output_stride=output_stride, norm_layer=norm_layer(norm_mode), **kw)
    model.name, model.norm_mode = name, norm_mode
    if weights:
        load_weights(model, weights, name=name)
    return model


__all__ = ["BACKBONES", "build_backbone", "backbone_from_config", "init_backbone", "without_pretrained", "PRETRAINED_KEYS", "load_weights", "norm_layer", "freeze_batchnorm", "FrozenBatchNorm2d"]
