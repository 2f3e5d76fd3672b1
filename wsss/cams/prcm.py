"""CPN's pixel-region correlation module (PRCM): an attention of each class's region vector over
the pixels (docs/methods/cpn.md, "PRCM").

With features f (N, D, h, w), a map A (N, K, h, w) of K = C + 1 channels, the key projection
``f10`` (1x1, D -> E) and the query q = relu(f9(f)) (N, E, h, w):

    r_k   = sum_i softmax_i(A_k) f_i               region vector of channel k   (N, D, K, 1)
    key_k = relu(f10(r))_k                         (N, K, E)
    att   = softmax_i(key_k . q_i / sqrt(K))       (N, K, h, w), sums to 1 over the pixels

:func:`region_vectors` is OCR's "spatial gather" at scale 1. The key layout: ``f10`` returns
(N, E, K, 1); ``"transpose"`` (the default) takes key_k as column k of it. The reference
reshapes that tensor with ``.view(N, K, E)`` instead (``"reference"``), which reads the
channel-major buffer row by row, so each "class key" mixes several classes' channels. The scale
is 1 / sqrt(K) with K the number of map channels (the reference writes 21 for VOC), not the
usual 1 / sqrt(E).
"""

import torch
import torch.nn.functional as F

KEY_LAYOUTS = ("transpose", "reference")


def region_vectors(features, probs, scale=1.0, align_corners=True):
    """Region vector of each channel of ``probs`` (N, K, h', w'): the features (N, D, h, w)
    averaged with the channel's spatial softmax (of ``scale * probs``) as weights. ``probs`` is
    resized to the features' size first (bilinear). Returns (N, D, K, 1)."""
    n, d, h, w = features.shape
    if probs.shape[-2:] != (h, w):
        probs = F.interpolate(probs, (h, w), mode="bilinear", align_corners=align_corners)
    weights = F.softmax(scale * probs.reshape(n, probs.shape[1], h * w), dim=2)
    return torch.bmm(weights, features.reshape(n, d, h * w).transpose(1, 2)).transpose(1, 2).unsqueeze(3)


def class_keys(keys, layout="transpose"):
    """(N, E, K, 1) projected region vectors -> (N, K, E) class keys (see the module docstring)."""
    n, e, k = keys.shape[:3]
    if layout == "transpose":
        return keys.reshape(n, e, k).transpose(1, 2)
    if layout == "reference":
        return keys.reshape(n, k, e)  # the reference's .view: row-major reinterpretation
    raise ValueError(f"unknown PRCM key layout {layout!r}; use one of {KEY_LAYOUTS}")


def region_attention(keys, query, scale=None):
    """``softmax over pixels(keys . query * scale)``: keys (N, K, E), query (N, E, h, w) ->
    (N, K, h, w); ``scale`` defaults to 1 / sqrt(K)."""
    n, e, h, w = query.shape
    k = keys.shape[1]
    scale = k ** -0.5 if scale is None else float(scale)
    sim = torch.bmm(keys, query.reshape(n, e, h * w)) * scale
    return F.softmax(sim, dim=2).reshape(n, k, h, w)
