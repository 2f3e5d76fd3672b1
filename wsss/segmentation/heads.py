"""DeepLab heads: v1 (dilated FOV conv), v2 (ASPP sum), v3+ (ASPP + decoder).

Each head maps the backbone's feature dict ``{"c2", "c3", "c4", "c5"}`` to raw class logits at
its own stride (``head.stride_key`` names the feature whose resolution the logits have); the
model (:mod:`wsss.segmentation.deeplab`) upsamples them to the input size.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..registry import Registry

NORMS = Registry("segmentation head norm")


@NORMS.register("bn")
def batch_norm(channels, groups=None):
    return nn.BatchNorm2d(channels)


@NORMS.register("gn")
def group_norm(channels, groups=4):
    # P-NOC's DeepLabV3+ uses GroupNorm with 4 groups in ASPP and decoder when --use_gn.
    return nn.GroupNorm(groups, channels)


def make_norm(kind, channels, groups=4):
    """A normalisation layer by name (``bn`` or ``gn``)."""
    return NORMS.get(kind)(channels, groups)


def _conv_norm_relu(cin, cout, kernel, dilation, norm, groups):
    pad = 0 if kernel == 1 else dilation
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
        make_norm(norm, cout, groups),
        nn.ReLU(inplace=True),
    )


def _init_norm_layers(module):
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class DeepLabV1Head(nn.Module):
    """DeepLab-LargeFOV head as trained on ResNet-38 by ICAM/SEAM's codebase.

    3x3 conv (dilation ``rate``) -> norm -> ReLU -> 1x1 conv -> norm -> ReLU -> dropout 0.5 ->
    1x1 classifier (with bias). Hidden width 512, Kaiming (fan_out) initialisation.
    """

    stride_key = "c5"

    def __init__(self, in_channels, num_classes, rate=12, width=512, norm="bn", gn_groups=4, dropout=0.5):
        super().__init__()
        self.fov = _conv_norm_relu(in_channels, width, 3, rate, norm, gn_groups)
        self.fov2 = _conv_norm_relu(width, width, 1, 1, norm, gn_groups)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(width, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        _init_norm_layers(self)

    def forward(self, feats):
        return self.classifier(self.dropout(self.fov2(self.fov(feats["c5"]))))


class ASPPv2Head(nn.Module):
    """DeepLab v2 ASPP: the SUM of parallel 3x3 dilated convs straight to class logits.

    Rates 6/12/18/24 at output stride 8; convs with bias, weights N(0, 0.01), biases 0
    (kazuto1011/deeplab-pytorch).
    """

    stride_key = "c5"

    def __init__(self, in_channels, num_classes, rates=(6, 12, 18, 24)):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates)
        for conv in self.branches:
            nn.init.normal_(conv.weight, mean=0.0, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, feats):
        x = feats["c5"]
        return sum(branch(x) for branch in self.branches)


class ASPPv3(nn.Module):
    """DeepLab v3 ASPP: 1x1 conv, three 3x3 atrous convs, image pooling; concat -> 1x1 -> 256."""

    def __init__(self, in_channels, rates=(6, 12, 18), channels=256, norm="bn", gn_groups=4, dropout=0.5):
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_norm_relu(in_channels, channels, 1, 1, norm, gn_groups)]
            + [_conv_norm_relu(in_channels, channels, 3, r, norm, gn_groups) for r in rates])
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, channels, 1, bias=False),
            make_norm(norm, channels, gn_groups),
            nn.ReLU(inplace=True),
        )
        self.project = _conv_norm_relu(channels * (len(rates) + 2), channels, 1, 1, norm, gn_groups)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        outs = [b(x) for b in self.branches]
        outs.append(self.pool(x).expand(-1, -1, *x.shape[-2:]))  # upsampling a 1x1 map = broadcast
        return self.dropout(self.project(torch.cat(outs, dim=1)))


class DeepLabV3PlusHead(nn.Module):
    """DeepLab v3+ head: ASPP on ``c5`` and a decoder fusing a 48-channel projection of ``c2``.

    Decoder (P-NOC / Puzzle-CAM layout): ASPP output upsampled to stride 4 (bilinear,
    ``align_corners``), concat with the projection, two 3x3 convs of 256 (dropout 0.5 and 0.1),
    1x1 classifier with bias. ``norm="gn"`` uses GroupNorm(4) everywhere in the head.
    """

    stride_key = "c2"

    def __init__(self, in_channels, low_channels, num_classes, rates=(6, 12, 18), channels=256,
                 low_proj=48, norm="bn", gn_groups=4, align_corners=True):
        super().__init__()
        self.align_corners = align_corners
        self.aspp = ASPPv3(in_channels, rates, channels, norm, gn_groups)
        self.low = _conv_norm_relu(low_channels, low_proj, 1, 1, norm, gn_groups)
        self.decoder = nn.Sequential(
            _conv_norm_relu(channels + low_proj, channels, 3, 1, norm, gn_groups),
            nn.Dropout(0.5),
            _conv_norm_relu(channels, channels, 3, 1, norm, gn_groups),
            nn.Dropout(0.1),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
        _init_norm_layers(self)

    def forward(self, feats):
        low = self.low(feats["c2"])
        x = self.aspp(feats["c5"])
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        return self.classifier(self.decoder(torch.cat([x, low], dim=1)))


def v3plus_rates(output_stride, base=(6, 12, 18)):
    """ASPP rates for an output stride: (6, 12, 18) at OS16, doubled at OS8."""
    if output_stride not in (8, 16):
        raise ConfigError(f"DeepLab v3+ needs output stride 8 or 16, got {output_stride}",
                          fix="set model.output_stride=16 (or 8)")
    return tuple(r * 16 // output_stride for r in base)
