"""C2AM's contrastive losses and the C2AM-H hint loss (docs/methods/ccam.md).

C2AM pools, per image, a foreground embedding (features weighted by the sigmoid activation map)
and a background embedding (weighted by its complement). Across the batch:

- ``sim_max_loss(fg)`` / ``sim_max_loss(bg)`` pull embeddings of the same kind together,
  ``-log(sim)`` weighted by ``exp(-alpha * rank)`` so the most similar pairs count most;
- ``sim_min_loss(bg, fg)`` pushes foreground from background, ``-log(1 - sim)``.

Cosine similarities are clamped to ``[5e-4, 0.9995]`` so both logs stay finite. Under torchrun
:func:`contrastive_losses` gathers the embeddings of every rank first, so the similarity
matrices span the whole global batch, as on one process.
"""

import torch
import torch.nn.functional as F

from ..engine.distributed import all_gather_grad

SIM_MIN = 5e-4
SIM_MAX = 0.9995


def cos_simi(a, b):
    """Clamped cosine similarity matrix between the rows of ``a`` (N, D) and ``b`` (M, D)."""
    sim = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    return sim.clamp(SIM_MIN, SIM_MAX)


def rank_weights(sim, alpha=0.25):
    """``exp(-alpha * (rank - 1))`` with rank 0 = the most similar entry of each row.

    The reference shifts ranks by one because the most similar entry of a row of an
    embedding against itself is the self pair; its loss is ``-log(0.9995)`` and its weight
    ``exp(alpha)``. Ties keep their column order (stable sort).
    """
    order = torch.sort(sim.detach(), dim=1, descending=True, stable=True).indices
    rank = torch.argsort(order, dim=1, stable=True)
    return torch.exp(-(rank - 1).to(sim.dtype) * alpha)


def sim_max_loss(emb, alpha=0.25):
    """Pull the batch's embeddings of one kind together: mean of ``-log(sim) * rank weight``."""
    sim = cos_simi(emb, emb)
    return (-torch.log(sim) * rank_weights(sim, alpha)).mean()


def sim_min_loss(bg, fg):
    """Push background from foreground embeddings: mean of ``-log(1 - sim(bg_i, fg_j))``."""
    return -torch.log(1 - cos_simi(bg, fg)).mean()


def contrastive_losses(fg, bg, alpha=0.25):
    """The three C2AM terms ``{"sim_fg", "sim_bg_fg", "sim_bg"}``; their sum is the C2AM loss.

    ``fg``/``bg`` (N, D) are this rank's embeddings; the terms are computed over the whole
    global batch (:func:`wsss.engine.distributed.all_gather_grad`)."""
    fg, bg = all_gather_grad(fg), all_gather_grad(bg)
    return {"sim_fg": sim_max_loss(fg, alpha), "sim_bg_fg": sim_min_loss(bg, fg), "sim_bg": sim_max_loss(bg, alpha)}


def hint_mask(hint, size, threshold):
    """Pixels of the activation map (``size`` = its h, w) that the CAM hint marks as foreground.

    ``hint`` (N, H, W) or (N, 1, H, W) is the max over present classes of the image-size CAMs;
    it is resized bicubically to the map's resolution and thresholded at ``>= threshold``
    (P-NOC: 0.4 on VOC, 0.3 on COCO).
    """
    if hint.dim() == 3:
        hint = hint.unsqueeze(1)
    hint = F.interpolate(hint.float(), size=tuple(size), mode="bicubic", align_corners=False)
    return hint >= threshold


def hint_target(smoothing):
    """BCE target of hinted pixels: 1 smoothed towards 1/2 (``smoothing`` 0.1 -> 0.95)."""
    return 1.0 - smoothing + smoothing * 0.5


def hint_loss(logits, hint, threshold=0.4, smoothing=0.1):
    """C2AM-H hint loss: BCE-with-logits of the hinted pixels towards :func:`hint_target`.

    ``logits`` (N, 1, h, w) are the activation map before the sigmoid. Averaged over the hinted
    pixels of the batch; 0 when none is hinted (the reference's empty mean would be NaN).
    """
    mask = hint_mask(hint, logits.shape[-2:], threshold)
    picked = logits[mask]
    if picked.numel() == 0:
        return logits.sum() * 0.0
    target = torch.full_like(picked, hint_target(smoothing))
    return F.binary_cross_entropy_with_logits(picked, target)
