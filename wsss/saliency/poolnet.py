"""PoolNet (Liu et al., CVPR 2019), the ResNet variant, as used by P-NOC on C2AM-H masks.

Five backbone levels ``c1`` (stem ReLU, stride 2), ``c2`` .. ``c5`` (stride 4, 8, 16, 16 at output
stride 16) are reduced by 1x1 conv + ReLU ("convert" layers). The global guidance module (GGM)
is a pyramid pooling block on ``c5`` (adaptive pools 1, 3, 5) whose output is sent, through a
3x3 conv + ReLU per level, to every decoder stage. Feature aggregation modules (FAM) add to their
input the upsampled 3x3 convs of its 2/4/8 average pools, ReLU, upsample to the next level,
3x3 conv; then fuse ``+ lateral + guidance`` with another 3x3 conv. A 1x1 conv scores the
finest map, upsampled to the input size (the saliency logit; ``sigmoid * 255`` is the map).

Decoder widths scale with ``width`` (published: 128, i.e. 128/256/512 channels). New layers start
from N(0, 0.01) as published (``init="normal"``); the decoder has no normalisation, so at small
widths that init shrinks the signal ~10 layers deep to nothing and training stalls (width 16 on
the synthetic benchmark: val fg/bg mIoU 50.8 after 2 epochs on ground-truth targets), hence
``init="kaiming"`` (He normal, fan-in) for narrow CPU-sized decoders. The optional
edge branch of the joint model is not included (P-NOC trains PoolNet without edges).

See docs/methods/poolnet.md.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError


def _conv_relu(cin, cout, k):
    return nn.Sequential(nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.ReLU(inplace=True))


def _up(x, size):
    if x.shape[-2:] == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class GlobalGuidance(nn.Module):
    """GGM: pyramid pooling on the deepest features, then one guidance map per decoder level."""

    def __init__(self, cin, width, out_channels, bins=(1, 3, 5)):
        super().__init__()
        self.reduce = nn.Conv2d(cin, width, 1, bias=False)
        self.pools = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(width, width, 1, bias=False), nn.ReLU(inplace=True))
            for b in bins)
        self.fuse = _conv_relu(width * (len(bins) + 1), width, 3)
        self.guides = nn.ModuleList(_conv_relu(width, c, 3) for c in out_channels)

    def forward(self, top, sizes):
        x = self.reduce(top)
        x = self.fuse(torch.cat([x] + [_up(p(x), x.shape[-2:]) for p in self.pools], dim=1))
        return [g(_up(x, s)) for g, s in zip(self.guides, sizes)]


def _avg_pool(x, k):
    # Maps smaller than the kernel (tiny images, low scales) pool globally instead of failing.
    if min(x.shape[-2:]) < k:
        return F.adaptive_avg_pool2d(x, 1)
    return F.avg_pool2d(x, k, k)


class FeatureAggregation(nn.Module):
    """FAM: multi-scale average-pool branches (2, 4, 8), then optional fusion with a lateral
    feature and a guidance map at the lateral's resolution."""

    def __init__(self, cin, cout, fuse, pools=(2, 4, 8)):
        super().__init__()
        self.pool_sizes = tuple(pools)
        self.convs = nn.ModuleList(nn.Conv2d(cin, cin, 3, 1, 1, bias=False) for _ in pools)
        self.conv_sum = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.conv_fuse = nn.Conv2d(cout, cout, 3, 1, 1, bias=False) if fuse else None

    def forward(self, x, lateral=None, guide=None):
        y = x
        for k, conv in zip(self.pool_sizes, self.convs):
            y = y + _up(conv(_avg_pool(x, k)), x.shape[-2:])
        y = F.relu(y)
        if lateral is not None:
            y = _up(y, lateral.shape[-2:])
        y = self.conv_sum(y)
        if self.conv_fuse is not None:
            y = self.conv_fuse(y + lateral + guide)
        return y


class PoolNet(nn.Module):
    """PoolNet on any registry backbone. ``forward(x)`` -> saliency logits (N, 1, H, W)."""

    def __init__(self, backbone, width=128, init="normal"):
        super().__init__()
        if init not in ("normal", "kaiming"):
            raise ConfigError(f"unknown PoolNet init {init!r}", fix="use model.init=normal (published) or kaiming")
        self.backbone = backbone
        ch = backbone.channels
        if "c1" not in ch:
            raise ConfigError(f"backbone {type(backbone).__name__} has no stride-2 'c1' feature, which PoolNet needs",
                              fix="use a ResNet / ResNeSt backbone (model.backbone=resnet50)")
        w1, w2, w3 = width, 2 * width, 4 * width
        ins = [ch["c1"], ch["c2"], ch["c3"], ch["c4"], ch["c5"]]
        outs = [w1, w2, w2, w3, w3]
        self.convert = nn.ModuleList(_conv_relu(i, o, 1) for i, o in zip(ins, outs))
        # Guidance for the fusions at c4, c3, c2, c1 resolution (deepest first).
        self.ggm = GlobalGuidance(ch["c5"], w3, [w3, w2, w2, w1])
        self.fams = nn.ModuleList([
            FeatureAggregation(w3, w3, fuse=True),   # c5 (+ c4)
            FeatureAggregation(w3, w2, fuse=True),   # -> c3
            FeatureAggregation(w2, w2, fuse=True),   # -> c2
            FeatureAggregation(w2, w1, fuse=True),   # -> c1
            FeatureAggregation(w1, w1, fuse=False),  # final, stride 2
        ])
        self.score = nn.Conv2d(w1, 1, 1)
        for m in self.new_modules():
            for conv in m.modules():
                if isinstance(conv, nn.Conv2d):
                    if init == "normal":
                        nn.init.normal_(conv.weight, 0.0, 0.01)
                    else:
                        nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
                    if conv.bias is not None:
                        nn.init.zeros_(conv.bias)

    def new_modules(self):
        """The layers trained from scratch (everything but the backbone)."""
        return [self.convert, self.ggm, self.fams, self.score]

    def forward(self, x):
        f = self.backbone(x)
        levels = [f["c1"], f["c2"], f["c3"], f["c4"], f["c5"]]
        c1, c2, c3, c4, c5 = [conv(t) for conv, t in zip(self.convert, levels)]
        g4, g3, g2, g1 = self.ggm(f["c5"], [c4.shape[-2:], c3.shape[-2:], c2.shape[-2:], c1.shape[-2:]])
        y = self.fams[0](c5, c4, g4)
        y = self.fams[1](y, c3, g3)
        y = self.fams[2](y, c2, g2)
        y = self.fams[3](y, c1, g1)
        y = self.fams[4](y)
        return _up(self.score(y), x.shape[-2:])
