"""Gated Pyramid Pooling (GPP) of AEFT-GPP: the signed CAM pooled on coarse-to-fine grids and
fused by sign-preserving gates, then the signed logit that replaces global average pooling.

With A the raw (signed) CAMs (B, C, h, w):

    P_r  = up(adaptive_avg_pool(A, r x r))                 r in grids (2, 4, 8, 16); bilinear,
                                                            corners not aligned, back to h x w
    g(u, v) = (relu(u) a_0 + relu(v) a_1) / 2 - (relu(-u) b_0 + relu(-v) b_1) / 2
         a = sigmoid(conv3x3([relu u, relu v])),  b = sigmoid(conv3x3([relu -u, relu -v]))
                                                            (2C -> 2 channels, padding 1, no bias)
    G    = g_3(g_2(g_1(P_2, P_4), P_8), P_16)               coarse to fine
    o    = GAP(relu A * relu G) - GAP(relu(-A) * relu(-G))  the image-level logits

``r x r`` is the pooled grid (an output size, not a kernel size); a grid finer than the map
repeats its pixels, so such a level equals A. The gate modules keep the reference's parameter
names (``gconv1.att_p.0.weight``, ...). See docs/methods/aeft.md.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .losses import gap2d

GRIDS = (2, 4, 8, 16)


def pyramid(cams, grids=GRIDS):
    """``[P_r for r in grids]``: each (B, C, h, w), the signed maps average-pooled to an r x r
    grid and upsampled back (bilinear, ``align_corners=False``)."""
    size = cams.shape[-2:]
    return [F.interpolate(F.adaptive_avg_pool2d(cams, (r, r)), size=size, mode="bilinear", align_corners=False)
            for r in grids]


class Gate(nn.Module):
    """The two-branch gate g(u, v) of two signed maps with ``channels`` channels each: positive
    parts weighted by ``att_p``, negative parts by ``att_n`` (3x3 convolution 2C -> 2 + sigmoid)."""

    def __init__(self, channels):
        super().__init__()
        self.att_p = nn.Sequential(nn.Conv2d(2 * channels, 2, 3, padding=1, bias=False), nn.Sigmoid())
        self.att_n = nn.Sequential(nn.Conv2d(2 * channels, 2, 3, padding=1, bias=False), nn.Sigmoid())

    def weights(self, u, v):
        """The gate's attention maps ``(a, b)``, each (B, 2, h, w)."""
        a = self.att_p(torch.cat([F.relu(u), F.relu(v)], dim=1))
        b = self.att_n(torch.cat([F.relu(-u), F.relu(-v)], dim=1))
        return a, b

    def forward(self, u, v):
        a, b = self.weights(u, v)
        pos = F.relu(u) * a[:, :1] + F.relu(v) * a[:, 1:]
        neg = F.relu(-u) * b[:, :1] + F.relu(-v) * b[:, 1:]
        return (pos - neg) / 2


class GatedPyramidPooling(nn.Module):
    """``G = gconv_{n-1}(... gconv1(P_grids[0], P_grids[1]) ..., P_grids[-1])`` (coarse to fine)."""

    def __init__(self, channels, grids=GRIDS):
        super().__init__()
        self.grids = tuple(int(r) for r in grids)
        if len(self.grids) < 2 or min(self.grids) < 1:
            raise ValueError(f"GPP needs at least two grid sizes >= 1, got {grids!r}")
        for i in range(1, len(self.grids)):
            self.add_module(f"gconv{i}", Gate(channels))

    def gates(self):
        return [getattr(self, f"gconv{i}") for i in range(1, len(self.grids))]

    def forward(self, cams):
        levels = pyramid(cams, self.grids)
        fused = levels[0]
        for gate, level in zip(self.gates(), levels[1:]):
            fused = gate(fused, level)
        return fused


def signed_logits(cams, gated):
    """``GAP(relu A * relu G) - GAP(relu(-A) * relu(-G))``: (B, C)."""
    return gap2d(F.relu(cams) * F.relu(gated)) - gap2d(F.relu(-cams) * F.relu(-gated))
