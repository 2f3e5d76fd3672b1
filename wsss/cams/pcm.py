"""SEAM's pixel correlation module (PCM), shared by the CAM methods that refine their maps with it
(CPN, ICAM): each pixel's map becomes an affinity-weighted sum of every pixel's map.

Given per-pixel embeddings ``e`` (N, D, h, w) (SEAM's ``f9`` projection of [image, conv4,
conv5 features]; the caller owns the projection, so a method may share it with another head, as
CPN shares ``f9`` with its PRCM):

    e_i   <- e_i / (||e_i||_2 + eps)                        (per pixel, over channels)
    W_ij   = relu(e_i . e_j)                                 (cosine affinity, negatives cut)
    T_ij   = W_ij / (sum_i W_ij + eps)                       (each column sums to 1)
    out_j  = sum_i cam_i T_ij                                (N, K, h, w)

``cam`` is resized to the embedding's size first (bilinear, ``align_corners=True``, as SEAM).
The module has no parameters. See docs/methods/cpn.md ("PCM").
"""

import torch
import torch.nn.functional as F
from torch import nn


def pcm_affinity(embedding, eps=1e-5):
    """Column-normalised affinity (N, hw, hw) of ``embedding`` (N, D, h, w): entry (i, j) is the
    weight of source pixel i in target pixel j; every column sums to 1 (up to ``eps``)."""
    n, d, h, w = embedding.shape
    e = embedding.reshape(n, d, h * w)
    e = e / (torch.norm(e, dim=1, keepdim=True) + eps)
    aff = F.relu(torch.bmm(e.transpose(1, 2), e))
    return aff / (aff.sum(dim=1, keepdim=True) + eps)


class PCM(nn.Module):
    """``PCM()(cam, embedding) -> refined``: ``cam`` (N, K, h', w') propagated by the affinity of
    ``embedding`` (N, D, h, w); returns (N, K, h, w). No parameters (see the module docstring)."""

    def __init__(self, eps=1e-5, align_corners=True):
        super().__init__()
        self.eps = float(eps)
        self.align_corners = bool(align_corners)

    def forward(self, cam, embedding):
        n, _, h, w = embedding.shape
        if cam.shape[-2:] != (h, w):
            cam = F.interpolate(cam, (h, w), mode="bilinear", align_corners=self.align_corners)
        aff = pcm_affinity(embedding, self.eps)
        return torch.bmm(cam.reshape(n, cam.shape[1], h * w), aff).reshape(n, cam.shape[1], h, w)

    def extra_repr(self):
        return f"eps={self.eps}, align_corners={self.align_corners}"
