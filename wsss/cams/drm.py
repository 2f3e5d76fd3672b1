"""SP-CAM's deconvolution reconstruction module (DRM; docs/methods/spcam.md, "DRM").

From the pixel-superpixel associations Q (B, 9, H, W) and the classifier's stride-16 features
x5, the DRM predicts per stride-16 cell two softmax weight sets over the cell's 9 neighbours,
one for the background logit and one shared by every foreground class, and reconstructs the
logits by a per-cell scatter (:func:`wsss.superpixel.ops.scatter_cells`): each cell n sends
``w_k(n) z(n)`` to the cell ``n - o_k``.

- ``q_feats`` (the reference's ``get_qfeats``): 3x3 conv 9 -> 32, dilation 16, padding 16
  (circular, as the reference; ``circular=False`` pads with zeros) + BatchNorm + ReLU, then
  4 x [3x3 conv stride 2 + BatchNorm + LeakyReLU(0.1)]: 32 -> 32 -> 64 -> 128 -> 128 (stride 16);
- ``tran_conv`` (``get_tran_conv``) on ``cat[x5.detach(), q]``: 3x3 convs to 1024, 256, 128, then
  a 1x1 conv to 18, each with a bias and LeakyReLU(0.1) (the last one too, as the reference);
- ``w_bg = softmax(t[:9])``, ``w_fg = softmax(t[9:])``.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..superpixel.ops import scatter_cells


def conv_bn_leaky(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1))


def conv_leaky(cin, cout, kernel=3):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, 1, (kernel - 1) // 2, bias=True), nn.LeakyReLU(0.1))


class DRM(nn.Module):
    """``forward(features, assoc) -> (w_bg, w_fg)``, each (B, 9, h, w) softmax weights per cell;
    :meth:`reconstruct` applies them to logits (B, 1 + C, h, w)."""

    def __init__(self, feat_channels, q_width=32, widths=(1024, 256, 128), circular=True, cell=16):
        super().__init__()
        q = int(q_width)
        self.q_feats = nn.Sequential(
            nn.Sequential(nn.Conv2d(9, q, 3, 1, padding=cell, dilation=cell, bias=False,
                                    padding_mode="circular" if circular else "zeros"),
                          nn.BatchNorm2d(q), nn.ReLU(inplace=True)),
            conv_bn_leaky(q, q, 2), conv_bn_leaky(q, 2 * q, 2), conv_bn_leaky(2 * q, 4 * q, 2),
            conv_bn_leaky(4 * q, 4 * q, 2))
        chans = [int(feat_channels) + 4 * q, *map(int, widths)]
        self.tran_conv = nn.Sequential(*[conv_leaky(a, b) for a, b in zip(chans, chans[1:])],
                                       conv_leaky(chans[-1], 18, kernel=1))

    def forward(self, features, assoc):
        q = self.q_feats(assoc.to(features.dtype))
        if q.shape[-2:] != features.shape[-2:]:
            raise ValueError(f"associations give {tuple(q.shape[-2:])} cells but the features are "
                             f"{tuple(features.shape[-2:])}: the backbone must have output stride 16")
        t = self.tran_conv(torch.cat([features.detach(), q], 1))
        return F.softmax(t[:, :9], 1), F.softmax(t[:, 9:], 1)

    @staticmethod
    def reconstruct(logits, w_bg, w_fg):
        """Scatter the background channel with ``w_bg`` and every class channel with ``w_fg``."""
        return torch.cat([scatter_cells(logits[:, :1], w_bg), scatter_cells(logits[:, 1:], w_fg)], 1)
