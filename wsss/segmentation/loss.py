"""Segmentation loss: pixel-wise cross-entropy with an ignore index and label smoothing."""

import torch.nn.functional as F

IGNORE_INDEX = 255


def segmentation_loss(logits, target, ignore_index=IGNORE_INDEX, label_smoothing=0.0):
    """Mean cross-entropy over the non-ignored pixels.

    ``logits`` (N, K, H, W), ``target`` int64 (N, H, W) with ``ignore_index`` for void. With
    label smoothing ``ls`` the target distribution is ``(1 - ls) * onehot + ls / K`` (torch's
    definition, as used by P-NOC with ls=0.1). A batch whose pixels are all ignored gives a zero
    loss that still back-propagates (instead of torch's NaN).
    """
    if logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in size")
    valid = target != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, ignore_index=ignore_index, label_smoothing=float(label_smoothing))
