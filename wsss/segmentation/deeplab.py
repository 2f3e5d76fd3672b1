"""DeepLab v1 / v2 / v3+ segmentation networks on the registry's backbones.

``build_segmentation_model(model_cfg, num_outputs)`` builds one from a config's ``model``
section; ``num_outputs`` counts background, i.e. ``dataset.num_classes + 1``. The model's
``forward`` returns logits at the input resolution; ``forward_logits`` the head's raw logits at
its stride (8 for v1/v2 on an OS8 backbone, 4 for v3+).

See docs/methods/deeplab.md.
"""

import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..registry import Registry
from .heads import ASPPv2Head, DeepLabV1Head, DeepLabV3PlusHead, v3plus_rates

MODELS = Registry("segmentation model")

# The references' final upsampling: ICAM/SEAM (v1) and P-NOC (v3+) use align_corners=True,
# kazuto1011's DeepLab v2 uses False.
DEFAULT_ALIGN = {"deeplabv1": True, "deeplabv2": False, "deeplabv3plus": True}


class SegmentationModel(nn.Module):
    """Backbone + DeepLab head; ``forward`` upsamples the logits to the input size."""

    def __init__(self, backbone, head, output_stride, align_corners=True, frozen_prefixes=()):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.output_stride = output_stride
        self.align_corners = align_corners
        self.frozen_prefixes = tuple(frozen_prefixes)
        freeze_prefixes(backbone, self.frozen_prefixes)

    def train(self, mode=True):
        """Like ``nn.Module.train``, but frozen backbone parts (P-NOC's frozen stem) stay in eval
        mode, so their BatchNorm statistics do not drift either."""
        super().train(mode)
        for name, m in self.backbone.named_modules():
            if name and any(f"{name}.".startswith(p) or name.startswith(p) for p in self.frozen_prefixes):
                m.eval()
        return self

    @property
    def logit_stride(self):
        """Stride of ``forward_logits`` relative to the input (4 for v3+, else the OS)."""
        return 4 if self.head.stride_key == "c2" else self.output_stride

    def forward_logits(self, x):
        return self.head(self.backbone(x))

    def upsample(self, logits, size):
        """The final bilinear upsampling of raw logits to ``size`` (the reference's align_corners)."""
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=self.align_corners)

    def forward(self, x):
        return self.upsample(self.forward_logits(x), x.shape[-2:])


@MODELS.register("deeplabv1")
def deeplabv1(backbone, num_outputs, output_stride, rate=12, width=512, norm="bn", gn_groups=4):
    return DeepLabV1Head(backbone.channels["c5"], num_outputs, rate=rate, width=width, norm=norm,
                         gn_groups=gn_groups)


@MODELS.register("deeplabv2")
def deeplabv2(backbone, num_outputs, output_stride, rates=(6, 12, 18, 24)):
    return ASPPv2Head(backbone.channels["c5"], num_outputs, rates=tuple(rates))


@MODELS.register("deeplabv3plus")
def deeplabv3plus(backbone, num_outputs, output_stride, rates=None, norm="bn", gn_groups=4,
                  channels=256, low_proj=48, align_corners=True):
    rates = tuple(rates) if rates else v3plus_rates(output_stride)
    return DeepLabV3PlusHead(backbone.channels["c5"], backbone.channels["c2"], num_outputs, rates=rates,
                             channels=channels, low_proj=low_proj, norm=norm, gn_groups=gn_groups,
                             align_corners=align_corners)


def freeze_prefixes(module, prefixes):
    """Set ``requires_grad=False`` on parameters whose names start with any prefix."""
    names = [n for n, _ in module.named_parameters()]
    for prefix in prefixes:
        hit = [n for n in names if n.startswith(prefix)]
        if not hit:
            raise ConfigError(f"model.frozen_prefixes: no backbone parameter starts with {prefix!r}",
                              fix=f"use a prefix of one of: {', '.join(sorted({n.split('.')[0] for n in names}))}")
    for n, p in module.named_parameters():
        if any(n.startswith(prefix) for prefix in prefixes):
            p.requires_grad_(False)


def build_segmentation_model(model_cfg, num_outputs, backbone=None):
    """A :class:`SegmentationModel` from a config's ``model`` section.

    Keys: ``name`` (deeplabv1|deeplabv2|deeplabv3plus), the backbone's
    (:func:`wsss.backbones.backbone_from_config`: ``backbone``, ``output_stride``, ``norm_mode``,
    ``backbone_kwargs``, ``weights``, ``backbone_init`` e.g. the CAM network's checkpoint),
    ``head`` (head options, e.g. ``norm: gn``, ``rates``, ``channels``), ``align_corners``,
    ``frozen_prefixes``. ``backbone`` (a module) replaces the built one (``backbone_init``
    still loads into it).
    """
    from ..backbones import backbone_from_config, init_backbone  # late: tests pass stand-in backbones

    name = model_cfg.get("name", "deeplabv3plus")
    factory = MODELS.get(name)
    backbone = backbone_from_config(model_cfg) if backbone is None else init_backbone(backbone, model_cfg)
    output_stride = int(getattr(backbone, "output_stride", model_cfg.get("output_stride", 16)))
    head_kw = dict(model_cfg.get("head") or {})
    align = model_cfg.get("align_corners", DEFAULT_ALIGN[name])
    if name == "deeplabv3plus":
        head_kw.setdefault("align_corners", align)
    try:
        head = factory(backbone, num_outputs, output_stride, **head_kw)
    except TypeError as e:
        raise ConfigError(f"bad model.head options for {name}: {e}",
                          fix="see wsss/segmentation/deeplab.py for each head's options") from None
    return SegmentationModel(backbone, head, output_stride, align_corners=align,
                             frozen_prefixes=model_cfg.get("frozen_prefixes") or ())
