"""The segmentation training task for :class:`wsss.engine.Trainer`: DeepLab on (pseudo) masks.

Config keys read here: ``model`` (see :func:`build_segmentation_model`), ``method.label_smoothing``
(P-NOC: 0.1), ``method.msc_scales`` (kazuto1011's DeepLab v2 "MSC" training: extra inputs
at these scales; the loss is summed over the full-scale logits, each scaled one, and their
pixel-wise max) and ``method.extra_loss`` (a named pixel loss on the full-scale raw logits,
added with its weight: :mod:`wsss.segmentation.pixel_losses`). Unlike that reference, which downsamples the labels to each logit map, every
output is upsampled to the input size first (as P-NOC and ICAM's codebase do).
"""

import torch
import torch.nn.functional as F

from ..engine import TaskModule, param_groups_4
from .deeplab import build_segmentation_model
from .loss import segmentation_loss
from .pixel_losses import build_extra_loss


class SegmentationTask(TaskModule):
    """DeepLab trained with pixel-wise CE (ignore 255, optional label smoothing).

    ``num_classes`` is the dataset's foreground count; the model predicts ``num_classes + 1``.
    ``on_epoch_start`` runs :attr:`validator` (if set) on the weights of the epoch just finished,
    i.e. before epoch ``e + 1`` it validates epoch ``e`` (epoch 0 = the initial weights).
    """

    def __init__(self, cfg, num_classes, backbone=None):
        super().__init__()
        method = cfg.get("method") or {}
        self.num_outputs = num_classes + 1
        self.model = build_segmentation_model(cfg["model"], self.num_outputs, backbone=backbone)
        self.label_smoothing = float(method.get("label_smoothing", 0.0))
        self.msc_scales = [float(s) for s in method.get("msc_scales") or []]
        self.backbone_lr_mult = float(method.get("backbone_lr_mult", 1.0))
        self.extra_loss = build_extra_loss(method.get("extra_loss"))
        self.validator = None

    def param_groups(self):
        # Pre-trained backbone at lr x1 (biases x2), new head at x10 (biases x20), as in P-NOC,
        # ICAM's codebase and kazuto1011's DeepLab v2 (x10 on the ASPP). A backbone trained from
        # scratch (synthetic benchmark) may take method.backbone_lr_mult (e.g. 10, like the head).
        groups = param_groups_4(backbone=self.model.backbone, new=[self.model.head])
        for g in groups:
            if g["name"].startswith("backbone."):
                g["lr_mult"] *= self.backbone_lr_mult
        return {"main": groups}

    def outputs(self, x):
        """``(outputs, raw)``: training outputs at input resolution (``[logits]``, or MSC's
        scales + their max) and the full-scale raw logits at the head's stride."""
        raw = self.model.forward_logits(x)
        size = x.shape[-2:]
        full = self.model.upsample(raw, size)
        if not self.msc_scales:
            return [full], raw
        scaled = []
        for s in self.msc_scales:
            xs = F.interpolate(x, size=[int(d * s) for d in size], mode="bilinear", align_corners=False)
            scaled.append(F.interpolate(self.model(xs), size=size, mode="bilinear", align_corners=False))
        return [full, *scaled, torch.stack([full, *scaled]).amax(0)], raw

    def training_step(self, batch, ctx):
        target = batch["mask"]
        outputs, raw = self.outputs(batch["image"])
        losses = [segmentation_loss(o, target, label_smoothing=self.label_smoothing) for o in outputs]
        out = {"loss": sum(losses)}
        if len(losses) > 1 or self.extra_loss:
            out["ce"] = losses[0].detach()
        if self.extra_loss:
            name, weight, fn = self.extra_loss
            extra = fn(raw, batch)
            out["loss"] = out["loss"] + weight * extra
            out[name] = extra.detach()
        return out

    def on_epoch_start(self, ctx):
        if self.validator is not None:
            self.validator(self, ctx.epoch, ctx.step)
