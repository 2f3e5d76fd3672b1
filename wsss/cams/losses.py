"""Losses shared by the CAM methods (multi-label soft margin with label smoothing, Puzzle L1,
the saliency-guided loss of SP-CAM)."""

import torch.nn.functional as F


def smooth_labels(labels, ls):
    """Label smoothing of multi-hot targets: ``(1 - ls) * y + ls / 2`` (P-NOC's ``label_smoothing``)."""
    return labels if not ls else (1.0 - ls) * labels + ls * 0.5


def gap2d(x):
    """Global average pooling (B, C, h, w) -> (B, C)."""
    return x.mean(dim=(2, 3))


def mlsm(logits, targets):
    """Multi-label soft-margin loss, mean over classes then over the batch (computed in float32)."""
    return F.multilabel_soft_margin_loss(logits.float(), targets.float())


def masked_l1(a, b, labels):
    """Mean over every element of ``|a - b| * y`` (y: multi-hot (B, C) broadcast over space).

    Puzzle-CAM's reconstruction loss: absent classes contribute zeros but still count in the
    mean (the reference divides by B * C * h * w, not by the number of present elements).
    """
    return ((a.float() - b.float()).abs() * labels[:, :, None, None].float()).mean()


def saliency_guided_loss(logits, saliency, labels, tau=0.4, fg_weight=0.5):
    """EPS-style saliency loss of C + 1 logits (B, 1 + C, h, w) against saliency (B, 1, h, w) in
    [0, 1] (docs/methods/spcam.md, "Saliency-guided loss").

    ``p = softmax(logits)``; a present class c is "salient" when ``sum round(p_c) round(s) /
    sum (round(p_c) + 1e-4) > tau`` (``p`` detached there); ``fg`` sums the salient classes,
    ``bg`` the background and the other present classes; the loss is
    ``MSE(fg_weight fg + (1 - fg_weight)(1 - bg), s)`` over every pixel."""
    p = logits.float().softmax(1)
    hard = p[:, 1:].detach().round()
    iou = (hard * saliency.float().round()).flatten(2).sum(-1) / (hard + 1e-4).flatten(2).sum(-1)
    present = labels > 0.5
    salient = (present & (iou > tau)).to(p.dtype)[..., None, None]
    other = (present & (iou <= tau)).to(p.dtype)[..., None, None]
    fg = (p[:, 1:] * salient).sum(1, keepdim=True)
    bg = p[:, :1] + (p[:, 1:] * other).sum(1, keepdim=True)
    pred = fg_weight * fg + (1.0 - fg_weight) * (1.0 - bg)
    return F.mse_loss(pred, saliency.float())
