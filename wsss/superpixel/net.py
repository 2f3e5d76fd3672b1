"""The pixel-superpixel association network: SpixelFCN's ``SpixelNet1l_bn`` (docs/methods/spcam.md).

An encoder-decoder with skip connections; ``conv`` = 3x3 conv (no bias) + BatchNorm +
LeakyReLU(0.1). Encoder 16-16 | 32-32 (stride 2) | 64-64 (s2) | 128-128 (s2) | 256-256 (s2);
decoder 4 x [4x4 transposed conv stride 2 (bias) + LeakyReLU, concatenation with the skip,
conv]; head ``pred_mask0`` (3x3, 16 -> 9, bias) and a softmax over the 9 channels: per pixel
the association ``Q`` to the 9 cells around its own 16 x 16 cell (:mod:`wsss.superpixel.ops`).

Parameter names are SpixelFCN's (``conv0a.0.weight``, ``conv0a.1.running_mean``, ...,
``deconv0.0.bias``, ``pred_mask0.weight``), so its released checkpoints (``SpixelNet_bsd_ckpt.tar``,
SP-CAM's ``Q_model_*.pth``) load strictly. ``pred_mask1..3`` exist in those files but are not
used by the forward pass: they are kept (frozen) only so that the files load.
Input: an image whose sides are multiples of 16, normalised as the caller's images (SP-CAM:
ImageNet mean/std; SpixelFCN itself used ``x - mean`` on [0, 1]).
"""

import torch
from torch import nn

#: encoder widths of the five levels
WIDTHS = (16, 32, 64, 128, 256)
#: the side of a cell (four stride-2 levels)
CELL = 16


def conv_bn(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1))


def deconv(cin, cout):
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=True), nn.LeakyReLU(0.1))


class SpixelNet(nn.Module):
    """``forward(x) -> Q`` (B, 9, H, W), a softmax over the 9 neighbouring cells."""

    cell = CELL

    def __init__(self):
        super().__init__()
        w = WIDTHS
        for i, (cin, cout) in enumerate(zip((3,) + w[:-1], w)):
            self.add_module(f"conv{i}a", conv_bn(cin, cout, 1 if i == 0 else 2))
            self.add_module(f"conv{i}b", conv_bn(cout, cout))
        for i in (3, 2, 1, 0):
            self.add_module(f"deconv{i}", deconv(w[i + 1], w[i]))
            self.add_module(f"conv{i}_1", conv_bn(2 * w[i], w[i]))
            self.add_module(f"pred_mask{i}", nn.Conv2d(w[i], 9, 3, 1, 1, bias=True))
        self.softmax = nn.Softmax(1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, 0.1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for i in (1, 2, 3):  # in the released files, never used
            getattr(self, f"pred_mask{i}").requires_grad_(False)

    def forward(self, x):
        if x.shape[-1] % self.cell or x.shape[-2] % self.cell:
            raise ValueError(f"the superpixel network needs sides that are multiples of {self.cell}, got "
                             f"{tuple(x.shape[-2:])}")
        skips = []
        for i in range(len(WIDTHS)):
            x = getattr(self, f"conv{i}b")(getattr(self, f"conv{i}a")(x))
            skips.append(x)
        for i in (3, 2, 1, 0):
            x = getattr(self, f"conv{i}_1")(torch.cat((skips[i], getattr(self, f"deconv{i}")(x)), 1))
        return self.softmax(self.pred_mask0(x))

