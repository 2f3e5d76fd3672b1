"""psa/SEAM's ResNet-38 "d" (Wu et al.'s wide ResNet-38 with dilated b5-b7), output stride 8.

Parameter names are psa's (``conv1a``, ``b2``, ``b2_1``, ..., ``b7``, ``bn7``; blocks with
``bn_branch2a``, ``conv_branch2a``, ``bn_branch2b1``, ``conv_branch2b1``, [``bn_branch2b2``,
``conv_branch2b2``], ``conv_branch1``), so psa's converted checkpoints and the MXNet ImageNet
``.params`` file load strictly (see :mod:`wsss.backbones.weights`).

Architecture (as in jiwoon-ahn/psa ``network/resnet38d.py``):

- ``conv1a``: 3x3, 3 -> 64, stride 1, no BN (stride 1 input resolution).
- Pre-activation blocks: BN + ReLU of the input feeds both the 3x3 branch and, when the shape
  changes, the 1x1 projection ``conv_branch1``; an unchanged shape adds the raw input.
  b2 (128, stride 2), b3 (256, stride 2), b4 (512, stride 2) with 2, 2 and 5 extra blocks.
- b5 (1024, stride 1): its first 3x3 conv is undilated, its second and both convs of b5_1/b5_2
  have dilation 2.
- b6 (2048) and b7 (4096): pre-activation bottlenecks 1x1 -> 3x3 dilation 4 -> 1x1 (widths
  out/4, out/2, out) with ``Dropout2d`` (0.3 in b6, 0.5 in b7: ``dropouts``; AEFT uses 0.2 in both)
  after the ReLUs inside the branch.
- ``bn7`` + ReLU on b7's output gives the 4096-channel final map.

``forward(x)`` returns ``c1`` = b2_2 (stride 2, 128), ``c2`` = b3_2 (stride 4, 256), ``c3`` = b4_5
(stride 8, 512), ``c4`` = b5_2 (stride 8, 1024), ``c5`` = relu(bn7(b7)) (stride 8, 4096), and the
pre-activations (``relu(bn_branch2a(input))``) that psa-derived methods tap: ``b4_pre`` (SEAM's
``conv3``, 256), ``b5_pre`` (psa's ``conv4``, 512; AffinityNet, CPN/ICAM PCM), ``b6_pre`` (psa's
``conv5``, 1024).

psa freezes ``conv1a`` (``requires_grad=False``; ``trainable_conv1a=True`` undoes it) and keeps
every BN in eval mode with frozen affine parameters: that is ``norm_mode="frozen_affine"``.

See docs/methods/backbones.md.
"""

import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


class PreActBlock(nn.Module):
    """psa's ``ResBlock``: BN-ReLU, 3x3 (stride, ``first_dilation``), BN-ReLU, 3x3 (``dilation``)."""

    def __init__(self, cin, mid, cout, norm_layer, stride=1, dilation=1, first_dilation=None):
        super().__init__()
        first_dilation = dilation if first_dilation is None else first_dilation
        self.same_shape = cin == cout and stride == 1
        self.bn_branch2a = norm_layer(cin)
        self.conv_branch2a = nn.Conv2d(cin, mid, 3, stride, padding=first_dilation, dilation=first_dilation,
                                       bias=False)
        self.bn_branch2b1 = norm_layer(mid)
        self.conv_branch2b1 = nn.Conv2d(mid, cout, 3, padding=dilation, dilation=dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        """Returns ``(output, pre-activation of the input)``."""
        pre = F.relu(self.bn_branch2a(x))
        shortcut = x if self.same_shape else self.conv_branch1(pre)
        out = self.conv_branch2b1(F.relu(self.bn_branch2b1(self.conv_branch2a(pre))))
        return shortcut + out, pre


class PreActBottleneck(nn.Module):
    """psa's ``ResBlock_bot``: BN-ReLU, 1x1 to out/4, BN-ReLU-Dropout2d, 3x3 dilated to out/2,
    BN-ReLU-Dropout2d, 1x1 to out; projection shortcut ``conv_branch1`` on the pre-activation."""

    def __init__(self, cin, cout, norm_layer, dilation, dropout):
        super().__init__()
        self.bn_branch2a = norm_layer(cin)
        self.conv_branch2a = nn.Conv2d(cin, cout // 4, 1, bias=False)
        self.bn_branch2b1 = norm_layer(cout // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(cout // 4, cout // 2, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn_branch2b2 = norm_layer(cout // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(cout // 2, cout, 1, bias=False)
        self.conv_branch1 = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        pre = F.relu(self.bn_branch2a(x))
        out = self.conv_branch2a(pre)
        out = self.conv_branch2b1(self.dropout_2b1(F.relu(self.bn_branch2b1(out))))
        out = self.conv_branch2b2(self.dropout_2b2(F.relu(self.bn_branch2b2(out))))
        return self.conv_branch1(pre) + out, pre


# (name, cin, mid, cout, stride, dilation, first_dilation) of the basic blocks.
_BLOCKS = (
    ("b2", 64, 128, 128, 2, 1, None), ("b2_1", 128, 128, 128, 1, 1, None), ("b2_2", 128, 128, 128, 1, 1, None),
    ("b3", 128, 256, 256, 2, 1, None), ("b3_1", 256, 256, 256, 1, 1, None), ("b3_2", 256, 256, 256, 1, 1, None),
    ("b4", 256, 512, 512, 2, 1, None),
    *((f"b4_{i}", 512, 512, 512, 1, 1, None) for i in range(1, 6)),
    ("b5", 512, 512, 1024, 1, 2, 1), ("b5_1", 1024, 512, 1024, 1, 2, None), ("b5_2", 1024, 512, 1024, 1, 2, None),
)
# Block whose output is each feature level, and block whose input pre-activation is exported.
_LEVELS = {"b2_2": "c1", "b3_2": "c2", "b4_5": "c3", "b5_2": "c4"}
_PRE = {"b4": "b4_pre", "b5": "b5_pre", "b6": "b6_pre"}


class ResNet38d(nn.Module):
    """psa's ResNet-38d trunk returning the feature dict described in the module docstring."""

    checkpoint_family = "resnet38d"

    def __init__(self, output_stride=8, norm_layer=nn.BatchNorm2d, trainable_conv1a=False, dropouts=(0.3, 0.5)):
        super().__init__()
        if output_stride != 8:
            raise ConfigError(f"resnet38d has output stride 8 only, got output_stride={output_stride!r}",
                              fix="set model.output_stride: 8 for resnet38d")
        if len(dropouts) != 2 or not all(0 <= float(p) < 1 for p in dropouts):
            raise ConfigError(f"resnet38d dropouts must be two rates in [0, 1) (b6, b7), got {dropouts!r}",
                              fix="e.g. model.backbone_kwargs.dropouts=[0.3, 0.5]")
        self.output_stride = 8
        self.conv1a = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        for name, cin, mid, cout, stride, dilation, first in _BLOCKS:
            self.add_module(name, PreActBlock(cin, mid, cout, norm_layer, stride, dilation, first))
        self.b6 = PreActBottleneck(1024, 2048, norm_layer, dilation=4, dropout=float(dropouts[0]))
        self.b7 = PreActBottleneck(2048, 4096, norm_layer, dilation=4, dropout=float(dropouts[1]))
        self.bn7 = norm_layer(4096)
        self.block_names = [b[0] for b in _BLOCKS] + ["b6", "b7"]
        self.conv1a.weight.requires_grad_(trainable_conv1a)
        self.channels = {"c1": 128, "c2": 256, "c3": 512, "c4": 1024, "c5": 4096,
                         "b4_pre": 256, "b5_pre": 512, "b6_pre": 1024}
        self.strides = {"c1": 2, "c2": 4, "c3": 8, "c4": 8, "c5": 8, "b4_pre": 4, "b5_pre": 8, "b6_pre": 8}

    def forward(self, x):
        feats = {}
        x = self.conv1a(x)
        for name in self.block_names:
            x, pre = getattr(self, name)(x)
            if name in _PRE:
                feats[_PRE[name]] = pre
            if name in _LEVELS:
                feats[_LEVELS[name]] = x
        feats["c5"] = F.relu(self.bn7(x))
        return feats
