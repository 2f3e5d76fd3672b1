"""C2AM (CCAM): class-agnostic activation map from contrastive fg/bg embeddings.

Network (CVI-SZU/CCAM, P-NOC's ``CCAM``): backbone at output stride 16; the stage-4 and stage-3
features are concatenated (``[c5, c4]``), a 3x3 conv (no bias) and a 1-channel BN give the
activation logits ``z``. ``sigmoid(z)`` weights the features into a foreground embedding,
``1 - sigmoid(z)`` into a background one (sums over pixels divided by h*w). The losses are in
:mod:`wsss.saliency.losses`.

Nothing in the contrastive losses says which of the two maps is the object: plain C2AM decides
it once, from the map's border (:func:`is_background_map`), and stores the decision in the
``flipped`` buffer that travels with the checkpoint. C2AM-H's hint loss fixes the polarity, so
P-NOC never flips.

Inference is in :mod:`wsss.saliency.infer`.

See docs/methods/ccam.md.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class C2AM(nn.Module):
    """Backbone + C2AM head. ``forward(x)`` -> ``{"logits": (N,1,h,w), "fg": (N,D), "bg": (N,D)}``."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        cin = backbone.channels["c5"] + backbone.channels["c4"]
        self.head_conv = nn.Conv2d(cin, 1, kernel_size=3, padding=1, bias=False)
        self.head_bn = nn.BatchNorm2d(1)
        nn.init.kaiming_normal_(self.head_conv.weight)
        # True when training decided that sigmoid(z) covers the background (see is_background_map).
        self.register_buffer("flipped", torch.zeros((), dtype=torch.bool))

    def head(self):
        """The layers trained from scratch (10x / 20x lr groups)."""
        return [self.head_conv, self.head_bn]

    def features(self, x):
        f = self.backbone(x)
        c5, c4 = f["c5"], f["c4"]
        if c4.shape[-2:] != c5.shape[-2:]:
            c4 = F.interpolate(c4, size=c5.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([c5, c4], dim=1)

    def forward(self, x):
        feats = self.features(x)
        logits = self.head_bn(self.head_conv(feats))
        n, c, h, w = feats.shape
        prob = torch.sigmoid(logits).reshape(n, 1, h * w)
        flat = feats.reshape(n, c, h * w).transpose(1, 2)  # (N, hw, C)
        fg = (prob @ flat).reshape(n, c) / (h * w)
        bg = ((1 - prob) @ flat).reshape(n, c) / (h * w)
        return {"logits": logits, "fg": fg, "bg": bg}

    def foreground_logits(self, x):
        """Activation logits oriented so that large values mean foreground."""
        z = self.forward(x)["logits"]
        # The reference turns a background map around with 1 - z; -z is the same flip of sigmoid(z).
        return -z if bool(self.flipped) else z


def border_mean(prob, border=4):
    """Mean of the activation map over four ``border``-pixel strips (top, bottom, left, right)."""
    if prob.dim() == 3:
        prob = prob.unsqueeze(1)
    p = prob[:, 0]
    b = max(1, min(border, p.shape[-2] // 2, p.shape[-1] // 2))
    strips = [p[:, :b, :], p[:, -b:, :], p[:, :, :b], p[:, :, -b:]]
    return torch.stack([s.float().mean() for s in strips]).mean()


def is_background_map(prob, border=4):
    """CCAM's flip check: objects rarely fill the image border, so a sigmoid map whose
    border strips average above 0.5 has learnt the background and must be inverted."""
    return bool(border_mean(prob, border) > 0.5)
