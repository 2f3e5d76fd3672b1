"""Losses shared by the CAM methods (multi-label soft margin with label smoothing, Puzzle L1)."""

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
