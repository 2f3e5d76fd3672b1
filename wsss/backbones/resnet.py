"""ResNet-18/50/101 with torchvision's parameter names and dilated output strides 8/16/32.

Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer1.0.downsample.0``/``.1``), so its ImageNet checkpoints load with ``strict=True`` once
``fc.*`` is dropped (see :mod:`wsss.backbones.weights`).

Dilation follows torchvision's ``replace_stride_with_dilation``, which the official ResNeSt code
shares: a stage that stops striding multiplies the dilation by its stride, and its first block
keeps the previous stage's dilation. Output stride 16: layer4 conv2 dilations [1, 2, 2];
output stride 8: layer3 [1, 2, 2, 2, 2, 2] and layer4 [2, 4, 4]. (Quirk, not reproduced: P-NOC's
own ResNet-50/101 copy only removes layer4's stride and never dilates it; its ResNeSt models,
which carry the published P-NOC numbers, use the rule above.)

torchvision's BasicBlock refuses dilation; ours dilates both 3x3 convs of a BasicBlock with the
block's dilation (the only use is resnet18 at output stride 8/16, which has no public dilated
checkpoint to match).

``forward(x)`` returns ``{"c1": relu(bn1(conv1 x)) (stride 2), "c2": layer1 (4), "c3": layer2
(8), "c4": layer3 (16, or 8), "c5": layer4 (the output stride)}``; ``.channels`` and
``.strides`` give each entry's width and stride. (IRN/P-NOC's "stage1" edge input is
``max_pool2d(c1, 3, 2, 1)``.)

See docs/methods/backbones.md.
"""

from torch import nn

from ..errors import ConfigError

OUTPUT_STRIDES = (8, 16, 32)


def stage_plan(output_stride):
    """``[(stride, dilation, first_block_dilation)]`` of layer1..layer4 for an output stride."""
    if output_stride not in OUTPUT_STRIDES:
        raise ConfigError(f"output_stride {output_stride!r} is not supported by ResNet backbones",
                          fix=f"use one of {', '.join(map(str, OUTPUT_STRIDES))}")
    plan, current, dilation = [], 4, 1
    for stride in (1, 2, 2, 2):
        previous = dilation
        if current * stride > output_stride:
            dilation, stride = dilation * stride, 1
        else:
            current *= stride
        plan.append((stride, dilation, previous))
    return plan


def conv3x3(cin, cout, stride=1, dilation=1, groups=1):
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision's two-conv residual block (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride, dilation, downsample, norm_layer):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, 1, dilation)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, inplanes, planes, stride, dilation, downsample, norm_layer):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = norm_layer(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stem + four residual stages returning the feature dict ``{"c1", ..., "c5"}``.

    Subclasses change the stem (:meth:`_make_stem`), the projection shortcut
    (:meth:`_make_shortcut`) and the block (:meth:`_make_block`); stage layout and dilation
    rules are shared.
    """

    checkpoint_family = "resnet"

    def __init__(self, block, layers, output_stride=16, norm_layer=nn.BatchNorm2d, width=64):
        super().__init__()
        self.block = block
        self.norm_layer = norm_layer
        self.output_stride = output_stride
        plan = stage_plan(output_stride)
        stem_channels = self._make_stem(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        inplanes, stride_so_far = stem_channels, 4
        self.channels = {"c1": stem_channels}
        self.strides = {"c1": 2}
        for i, (blocks, (stride, dilation, first_dilation)) in enumerate(zip(layers, plan)):
            planes = width * 2 ** i
            layer = self._make_layer(inplanes, planes, blocks, stride, dilation, first_dilation, is_first=i > 0)
            self.add_module(f"layer{i + 1}", layer)
            inplanes = planes * block.expansion
            stride_so_far *= stride
            self.channels[f"c{i + 2}"] = inplanes
            self.strides[f"c{i + 2}"] = stride_so_far
        self._init_weights()

    def _make_stem(self, width):
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self.norm_layer(width)
        return width

    def _make_shortcut(self, inplanes, outplanes, stride):
        return nn.Sequential(conv1x1(inplanes, outplanes, stride), self.norm_layer(outplanes))

    def _make_block(self, inplanes, planes, stride, dilation, downsample, is_first):
        return self.block(inplanes, planes, stride, dilation, downsample, self.norm_layer)

    def _make_layer(self, inplanes, planes, blocks, stride, dilation, first_dilation, is_first):
        outplanes = planes * self.block.expansion
        downsample = None
        if stride != 1 or inplanes != outplanes:
            downsample = self._make_shortcut(inplanes, outplanes, stride)
        layers = [self._make_block(inplanes, planes, stride, first_dilation, downsample, is_first)]
        layers += [self._make_block(outplanes, planes, 1, dilation, None, False) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)) and m.weight.is_meta:
                continue  # shape-only (meta) builds: nothing to initialise
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        c1 = self.relu(self.bn1(self.conv1(x)))
        c2 = self.layer1(self.maxpool(c1))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return {"c1": c1, "c2": c2, "c3": c3, "c4": c4, "c5": c5}


def resnet18(output_stride=16, norm_layer=nn.BatchNorm2d, width=64):
    """ResNet-18; ``width`` is the base width (64 = torchvision; 16 or 32 for CPU demos)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], output_stride, norm_layer, width=width)


def resnet50(output_stride=16, norm_layer=nn.BatchNorm2d):
    return ResNet(Bottleneck, [3, 4, 6, 3], output_stride, norm_layer)


def resnet101(output_stride=16, norm_layer=nn.BatchNorm2d):
    return ResNet(Bottleneck, [3, 4, 23, 3], output_stride, norm_layer)
