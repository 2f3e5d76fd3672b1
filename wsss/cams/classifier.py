"""The CAM classifier: backbone -> 1x1 convolution without bias -> CAMs A; logits = GAP(A).

See docs/methods/cam.md.
"""

from torch import nn

from ..backbones import backbone_from_config
from .losses import gap2d


class Classifier(nn.Module):
    """``forward(x) -> (logits (B, C), cams (B, C, h, w))``; ``cams`` are raw (before ReLU).

    ``head`` is the 1x1 convolution (Kaiming-normal init, as the reference), applied to the
    backbone's ``feature`` map (``c5``: the output-stride features).
    """

    def __init__(self, backbone, num_classes, feature="c5"):
        super().__init__()
        self.backbone = backbone
        self.feature = feature
        self.head = nn.Conv2d(backbone.channels[feature], num_classes, 1, bias=False)
        nn.init.kaiming_normal_(self.head.weight)

    def forward(self, x):
        cams = self.head(self.backbone(x)[self.feature])
        return gap2d(cams), cams

    @classmethod
    def from_config(cls, cfg, num_classes, **overrides):
        """Build from ``cfg["model"]`` (:func:`wsss.backbones.backbone_from_config`); ``overrides``
        (e.g. ``norm_mode="frozen"``) replace its keys."""
        return cls(backbone_from_config(cfg.get("model"), **overrides), num_classes)

