"""The triplet of AEFT (adversarial erasing framework via triplet): the soft-erased positive
image, the in-batch negatives that share no class with the anchor, the attraction and the
repulsion with hard mining. See docs/methods/aeft.md.

Notation: A raw CAMs (B, C, h, w), G the gated map of GPP (:mod:`wsss.cams.gpp`), y multi-hot
(B, C), maxnorm(v) = relu(relu(v) - min - 1e-5) / (max - min + 1e-5) with min / max of relu(v)
per (image, class).
"""

import torch
import torch.nn.functional as F

from .losses import gap2d

NO_NEGATIVE = -1


def max_norm(x, eps=1e-5):
    """AEFT's per-(image, channel) normalisation of (B, C, h, w) maps: ``relu(relu(x) - min - eps) /
    (max - min + eps)``, min and max of ``relu(x)``; values stay below 1."""
    x = F.relu(x)
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    return F.relu(x - lo - eps) / (hi - lo + eps)


def positive_mask(cams, labels, size, threshold=0.6):
    """The soft erasing mask of the positive image ``x * mask``: ``a * [a < threshold]`` with
    ``a = max_c(maxnorm(up(relu A)) * y)`` (bilinear to ``size``, corners not aligned):
    (B, 1, H, W). It keeps the weakly activated object parts, weighted by their activation,
    and zeroes the strongly activated ones and the background. Differentiable."""
    up = F.interpolate(F.relu(cams), size=tuple(size), mode="bilinear", align_corners=False)
    fg = (max_norm(up) * labels[:, :, None, None].to(up.dtype)).amax(dim=1, keepdim=True)
    return fg * (fg < threshold).to(fg.dtype)


def select_negatives(labels, generator=None):
    """For each anchor, another image of the batch that shares no class with it, drawn
    uniformly: (B,) int64 indices, :data:`NO_NEGATIVE` where there is none (or the anchor has no
    class). Drawn on the CPU with ``generator`` (same generator, same draw on every rank)."""
    pos = (labels.detach().float().cpu() > 0.5).float()
    disjoint = (pos @ pos.T) == 0
    disjoint &= pos.any(dim=1, keepdim=True)
    disjoint.fill_diagonal_(False)
    has = disjoint.any(dim=1)
    weights = torch.where(has[:, None], disjoint, torch.ones_like(disjoint)).float()
    picked = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    return torch.where(has, picked, torch.full_like(picked, NO_NEGATIVE)).to(labels.device)


def attraction(gated, gated_pos, labels):
    """``mean_{b,c} |GAP(relu G(x_p)) y - GAP(relu G(x)) y|`` (L1 over all B x C entries)."""
    y = labels.to(gated.dtype)
    return F.l1_loss(gap2d(F.relu(gated_pos)) * y, gap2d(F.relu(gated)) * y)


def region_mean(maps, region, eps=1e-5):
    """Per (image, class) mean of ``maps`` over the 0/1 ``region``: (B, C)."""
    return (maps * region).sum(dim=(2, 3)) / (region.sum(dim=(2, 3)) + eps)


def triplet_vectors(cams, gated, labels, low=0.2, eps=1e-5):
    """The per-class vectors the repulsion compares, for every image of the batch:

    ``anchor`` = mean of F over {Â < low} times y (the anchor's weakly activated area per
    present class) and ``whole`` = mean of F over {Â < 1} (every pixel: maxnorm stays below 1),
    with F = G / (max |G| + eps) and Â = maxnorm(A) y, all per (image, class). Both (B, C)."""
    y = labels.to(gated.dtype)[:, :, None, None]
    a_hat = max_norm(cams) * y
    feat = gated / (gated.abs().amax(dim=(2, 3), keepdim=True) + eps)
    anchor = region_mean(feat, (a_hat < low).to(feat.dtype)) * y[:, :, 0, 0]
    whole = region_mean(feat, (a_hat < 1.0).to(feat.dtype))
    return anchor, whole


def repulsion(anchor, whole, labels, negatives, margin=0.5, min_hard=4, mask_by="anchor"):
    """Hard-mined repulsion between each anchor and its negative: ``(loss, hard pairs)``.

    ``d_b = ||anchor_b - whole_j y||^2`` with j = ``negatives[b]`` and y the anchor's labels
    (``mask_by="anchor"``: the negative's response to the anchor's classes, which it lacks) or
    the negative's own (``"negative"``: the reference, where the two supports are disjoint and
    d is a sum of norms). Hard pairs: d < ``margin``; with more than ``min_hard`` of them the
    loss is ``mean_hard relu(margin - d)``, else 0 (as anchors without a negative: skipped)."""
    y = labels.to(whole.dtype)
    valid = negatives >= 0
    j = negatives.clamp(min=0)
    if mask_by == "anchor":
        neg = whole[j] * y
    elif mask_by == "negative":
        neg = (whole * y)[j]
    else:
        raise ValueError(f"mask_by must be 'anchor' or 'negative', got {mask_by!r}")
    dist = (anchor - neg).pow(2).sum(dim=1)
    hard = valid & (dist < margin)
    count = int(hard.sum())
    if count <= min_hard:
        return anchor.new_zeros(()), count
    return F.relu(margin - dist[hard]).mean(), count
