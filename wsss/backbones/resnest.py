"""ResNeSt-50/101/200/269 with the official (zhanghang1989/ResNeSt) parameter names.

Configuration of every released model: radix 2, cardinality 1, bottleneck width 64, deep stem
(``conv1.0`` 3x3/2 -> ``conv1.1`` BN -> ReLU -> ``conv1.3`` 3x3 -> ``conv1.4`` BN -> ReLU ->
``conv1.6`` 3x3 to twice the stem width, then ``bn1``), stem width 32 for ResNeSt-50 and 64 for
101/200/269, "avg-down" shortcuts and "avd" (average-pool downsampling after the split-attention
conv; ``avd_first=False``).

Details that change numbers, as in the official code:

- The first block of layer2..4 always has ``avd_layer = AvgPool2d(3, stride, padding=1)`` (count
  includes padding) after ``conv2``, and ``conv2`` itself has stride 1. In a stage that no longer
  strides (output stride 16/8) that pool is ``AvgPool2d(3, 1, 1)``: a 3x3 blur, not an identity.
- Shortcut ``downsample`` = ``AvgPool2d(kernel=stride, stride=stride, ceil_mode=True,
  count_include_pad=False)`` (``.0``, kernel 1 = identity in layer1 and in dilated stages) ->
  1x1 conv (``.1``) -> BN (``.2``).
- Split attention (``conv2``): grouped 3x3 conv to ``radix * C`` channels (``conv2.conv``,
  groups = radix), BN ``bn0``, ReLU; the radix splits are summed and globally averaged;
  ``fc1`` (1x1 with bias, to ``max(C * radix // 4, 32)``), ``bn1``, ReLU, ``fc2`` (1x1 with bias,
  to ``radix * C``); softmax over the radix axis; output = attention-weighted sum of the splits.
- Dilation: the official ``dilation=2`` (output stride 16) / ``dilated=True`` (output stride 8)
  give the same per-block dilations as :func:`wsss.backbones.resnet.stage_plan`.

See docs/methods/backbones.md.
"""

from torch import nn

from .resnet import ResNet, conv1x1, conv3x3


class SplitAttentionConv2d(nn.Module):
    """ResNeSt's split-attention 3x3 conv (``SplAtConv2d``), cardinality ``groups``."""

    def __init__(self, channels, stride, dilation, norm_layer, radix=2, groups=1, reduction=4):
        super().__init__()
        inter = max(channels * radix // reduction, 32)
        self.radix, self.groups = radix, groups
        self.conv = conv3x3(channels, channels * radix, stride, dilation, groups=groups * radix)
        self.bn0 = norm_layer(channels * radix)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(channels, inter, 1, groups=groups)
        self.bn1 = norm_layer(inter)
        self.fc2 = nn.Conv2d(inter, channels * radix, 1, groups=groups)

    def forward(self, x):
        x = self.relu(self.bn0(self.conv(x)))
        n, rc, h, w = x.shape
        splits = x.view(n, self.radix, rc // self.radix, h, w)  # split r = channels [r*C, (r+1)*C)
        gap = splits.sum(1).mean((2, 3), keepdim=True)
        att = self.fc2(self.relu(self.bn1(self.fc1(gap))))
        if self.radix > 1:
            # fc2's channels are ordered (group, radix, c): softmax across radix inside each group.
            att = att.view(n, self.groups, self.radix, -1).transpose(1, 2).softmax(dim=1)
        else:
            att = att.sigmoid()
        att = att.reshape(n, self.radix, rc // self.radix, 1, 1)
        return (att * splits).sum(1)


class SplitAttentionBottleneck(nn.Module):
    """ResNeSt bottleneck (cardinality 1, bottleneck width 64, avd after ``conv2``)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride, dilation, downsample, norm_layer, radix=2, avd=False):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = SplitAttentionConv2d(planes, 1 if avd else stride, dilation, norm_layer, radix)
        self.avd_layer = nn.AvgPool2d(3, stride, padding=1) if avd else None
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out)
        if self.avd_layer is not None:
            out = self.avd_layer(out)
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNeSt(ResNet):
    """The ResNet trunk with ResNeSt's deep stem, avg-down shortcuts and split-attention blocks."""

    checkpoint_family = "resnest"

    def __init__(self, layers, stem_width, output_stride=16, norm_layer=nn.BatchNorm2d, radix=2):
        self.stem_width, self.radix = stem_width, radix
        super().__init__(SplitAttentionBottleneck, layers, output_stride, norm_layer, width=64)

    def _make_stem(self, width):
        sw, norm = self.stem_width, self.norm_layer
        self.conv1 = nn.Sequential(
            conv3x3(3, sw, stride=2), norm(sw), nn.ReLU(inplace=True),
            conv3x3(sw, sw), norm(sw), nn.ReLU(inplace=True),
            conv3x3(sw, sw * 2),
        )
        self.bn1 = norm(sw * 2)
        return sw * 2

    def _make_shortcut(self, inplanes, outplanes, stride):
        return nn.Sequential(
            nn.AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True, count_include_pad=False),
            conv1x1(inplanes, outplanes),
            self.norm_layer(outplanes),
        )

    def _make_block(self, inplanes, planes, stride, dilation, downsample, is_first):
        return SplitAttentionBottleneck(inplanes, planes, stride, dilation, downsample, self.norm_layer,
                                        radix=self.radix, avd=stride > 1 or is_first)


def resnest50(output_stride=16, norm_layer=nn.BatchNorm2d):
    return ResNeSt([3, 4, 6, 3], 32, output_stride, norm_layer)


def resnest101(output_stride=16, norm_layer=nn.BatchNorm2d):
    return ResNeSt([3, 4, 23, 3], 64, output_stride, norm_layer)


def resnest200(output_stride=16, norm_layer=nn.BatchNorm2d):
    return ResNeSt([3, 24, 36, 3], 64, output_stride, norm_layer)


def resnest269(output_stride=16, norm_layer=nn.BatchNorm2d):
    return ResNeSt([3, 30, 48, 8], 64, output_stride, norm_layer)
