"""SEAM's pixel correlation module (PCM) and the side features it reads (docs/methods/icam.md, "PCM").

Used by ICAM (and CPN). Given a map ``cam`` (N, K, h', w') and per-pixel features ``f``
(N, D, h, w), PCM refines the map by a learnt affinity between the pixels of the feature grid:

    e   = f9(f)                       1x1 conv D -> E (no bias; Xavier-uniform init, gain 4)
    e_i = e_i / (||e_i||_2 + 1e-5)    per pixel
    A   = relu(e^T e)                 (hw x hw), A[i, j] >= 0
    A   = A / (sum_i A[i, j] + 1e-5)  each column sums to ~1
    cam_rv[:, j] = sum_i cam[:, i] A[i, j]           (cam resized to h x w first: bilinear,
                                                      align_corners=True)

so the refined value at pixel j is a weighted mean of the map over the pixels whose features
look like j's. The affinity is computed in float32 even under autocast.

:class:`PCMFeatures` builds SEAM's ``f``: the input image resized to the grid (bilinear,
align_corners=True; 3 channels), then ``relu(f8_3(tap1))`` and ``relu(f8_4(tap2))`` (1x1 convs
without bias, Kaiming-normal init) on two DETACHED backbone taps (ResNet-38d: ``b5_pre`` /
``b6_pre`` = SEAM's conv4 / conv5, 512 / 1024 -> 64 / 128 channels), 195 channels in all.
Parameter names are SEAM's (``f8_3``, ``f8_4``, ``f9``), so released checkpoints map by prefix.
"""

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


def float32_region(x):
    """A context in which autocast is off on ``x``'s device (matmuls stay float32)."""
    if x.device.type in ("cuda", "cpu"):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


def resize_to(x, size, align_corners=True):
    """``x`` (N, C, h, w) resized bilinearly to ``size`` (returned unchanged when equal)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


class PCM(nn.Module):
    """``PCM(feature_channels, embed_channels=192)``; ``forward(cam, features) -> refined cam``
    (N, K, h, w) on the features' grid. :meth:`affinity` exposes the column-normalised matrix."""

    def __init__(self, feature_channels, embed_channels=192, gain=4.0, eps=1e-5):
        super().__init__()
        self.eps = float(eps)
        self.f9 = nn.Conv2d(int(feature_channels), int(embed_channels), 1, bias=False)
        nn.init.xavier_uniform_(self.f9.weight, gain=gain)

    def embed(self, features):
        """Per-pixel L2-normalised embeddings (N, E, h*w) of ``features``."""
        e = self.f9(features).flatten(2)
        return e / (torch.linalg.vector_norm(e, dim=1, keepdim=True) + self.eps)

    def affinity(self, features):
        """The column-normalised affinity (N, hw, hw): ``A[n, i, j]`` weighs source pixel i in
        the refined value of pixel j (row-major pixel order)."""
        with float32_region(features):
            e = self.embed(features.float())
            a = F.relu(torch.matmul(e.transpose(1, 2), e))
            return a / (a.sum(dim=1, keepdim=True) + self.eps)

    def forward(self, cam, features):
        n, _, h, w = features.shape
        with float32_region(cam):
            cam = resize_to(cam.float(), (h, w)).flatten(2)
            return torch.matmul(cam, self.affinity(features)).view(n, -1, h, w)


class PCMFeatures(nn.Module):
    """SEAM's PCM input: ``cat[image at the grid, relu(f8_3(tap1.detach())), relu(f8_4(tap2.detach()))]``.

    ``in_channels`` / ``widths``: the two taps' channels and the convs' outputs (SEAM: 512, 1024
    -> 64, 128). Taps on another grid than ``size`` are resized to it (bilinear,
    align_corners=False), for backbones whose taps have other strides.
    """

    names = ("f8_3", "f8_4")

    def __init__(self, in_channels=(512, 1024), widths=(64, 128)):
        super().__init__()
        if len(in_channels) != 2 or len(widths) != 2:
            raise ValueError(f"PCMFeatures takes two taps, got {list(in_channels)} -> {list(widths)}")
        for name, cin, width in zip(self.names, in_channels, widths):
            conv = nn.Conv2d(int(cin), int(width), 1, bias=False)
            nn.init.kaiming_normal_(conv.weight)
            self.add_module(name, conv)
        self.out_channels = 3 + sum(int(w) for w in widths)

    def forward(self, image, taps, size):
        """``image`` (N, 3, H, W) as fed to the backbone, ``taps`` two (N, C_k, h_k, w_k) maps,
        ``size`` the grid (h, w)."""
        maps = [resize_to(image, size)]
        for name, tap in zip(self.names, taps):
            maps.append(resize_to(F.relu(getattr(self, name)(tap.detach())), size, align_corners=False))
        return torch.cat(maps, dim=1)
