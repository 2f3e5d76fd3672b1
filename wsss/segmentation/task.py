"""The segmentation training task for :class:`wsss.engine.Trainer`: DeepLab on (pseudo) masks.

Options (``method``): ``label_smoothing`` (P-NOC: 0.1), ``msc_scales`` (kazuto1011's DeepLab v2
"MSC" training: extra inputs at these scales; the loss is summed over the full-scale logits,
each scaled one, and their pixel-wise max), ``backbone_lr_mult`` and ``extra_loss`` (a named
pixel loss on the full-scale raw logits, added with its weight:
:mod:`wsss.segmentation.pixel_losses`; ICAM adds its feature-similarity loss). Unlike that
reference, which downsamples the labels to each logit map, every output is upsampled to the
input size first (as P-NOC and ICAM's codebase do). ``model`` is :func:`build_segmentation_model`'s.

Training data and model selection (``select``, set by ``tools/train_seg.py``): the masks of
``select.masks`` (a folder of another stage's PNGs, or ``gt``); with ``select.on: pseudo`` a
deterministic held-out part of the training split (``select.holdout``) is removed from training
and scored against its pseudo masks after every epoch (:class:`ModelSelector`, from
:meth:`on_train_start` and :meth:`on_epoch_end`); ``gt`` scores ``select.gt_split`` (default
``data.val_split``) against ground truth; ``none`` scores nothing.

See docs/methods/deeplab.md.
"""

import torch
import torch.nn.functional as F

from ..engine import Option, TaskModule, param_groups_4
from ..errors import ConfigError
from . import SEG_TASKS
from .deeplab import build_segmentation_model
from .loss import segmentation_loss
from .pixel_losses import build_extra_loss
from .selection import ModelSelector, holdout_ids


@SEG_TASKS.register("deeplab")
class SegmentationTask(TaskModule):
    """DeepLab (v1 / v2 / v3+ by ``model.name``) trained with pixel-wise CE (ignore 255,
    optional label smoothing).

    ``num_classes`` is the dataset's foreground count; the model predicts ``num_classes + 1``.
    With a selection set, ``selector`` scores the initial weights at the start (epoch 0) and
    every epoch's weights at its end, keeping the best in ``checkpoints/best.pth``.
    """

    name = "deeplab"
    options = {
        "label_smoothing": Option(0.0, "label smoothing of the pixel-wise cross-entropy"),
        "msc_scales": Option([], "extra training input scales (DeepLab v2 MSC, e.g. [0.5, 0.75])"),
        "backbone_lr_mult": Option(1.0, "lr multiplier of the backbone groups (e.g. 10 from scratch)"),
        "extra_loss": Option(None, "an extra pixel loss {name: <PIXEL_LOSSES entry>, weight: w, ...its options}"),
    }
    exports = ("model",)

    def __init__(self, cfg, num_classes, backbone=None):
        super().__init__(cfg, num_classes)
        self.num_outputs = num_classes + 1
        self.model = build_segmentation_model(cfg["model"], self.num_outputs, backbone=backbone)
        self.label_smoothing = float(self.opts["label_smoothing"])
        self.msc_scales = [float(s) for s in self.opts["msc_scales"] or []]
        self.backbone_lr_mult = float(self.opts["backbone_lr_mult"])
        self.extra_loss = build_extra_loss(self.opts["extra_loss"])
        self.selector = None

    # --------------------------------------------------------------------------- data
    @classmethod
    def selection_set(cls, cfg, data):
        """(dataset without transform, description) of the selection set of ``select.on``,
        ``(None, "none")`` without selection."""
        from ..data import build_dataset

        sel = cfg.get("select") or {}
        on, masks = sel.get("on", "pseudo"), sel.get("masks", "gt")
        name, root, split = data["dataset"], data["root"], data.get("train_split", "train")
        if on == "none":
            return None, "none"
        if on == "gt":
            gt_split = sel.get("gt_split") or data.get("val_split")
            if not gt_split:
                raise ConfigError("--select-on gt needs select.gt_split or data.val_split", fix="e.g. select.gt_split=val")
            val = build_dataset(name, root, gt_split)
            return val, f"GROUND TRUTH of split {gt_split} ({len(val)} images, --select-on gt)"
        val = build_dataset(name, root, split, mask_dir=None if masks == "gt" else masks)
        val.ids = holdout_ids(val.ids, float(sel.get("holdout", 0.05)))
        source = "ground-truth masks, --masks gt" if masks == "gt" else "pseudo masks"
        return val, f"held-out {len(val)} of split {split} ({source})"

    @classmethod
    def train_dataset(cls, cfg, data):
        """``data.train_split`` with the masks of ``select.masks`` (``gt``: ground truth),
        augmented; without the held-out selection images. Records the selection set's
        description in ``select.set`` (saved with the experiment)."""
        from ..data import build_dataset
        from ..data.transforms import build_train_transform

        sel = cfg.setdefault("select", {})
        masks = sel.get("masks", "gt")
        train = build_dataset(data["dataset"], data["root"], data.get("train_split", "train"),
                              transform=build_train_transform(cfg.get("augment")),
                              mask_dir=None if masks == "gt" else masks)
        val, sel["set"] = cls.selection_set(cfg, data)
        if sel.get("on", "pseudo") == "pseudo":
            held = set(val.ids)
            train.ids = [i for i in train.ids if i not in held]
        return train

    # ------------------------------------------------------------------------ training
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

    # --------------------------------------------------------------------------- hooks
    def on_train_start(self, ctx, resumed):
        """Build the selector (a fresh run forgets earlier scores) and score the weights training
        starts from: epoch 0, or the last finished epoch if a kill left it unscored."""
        from ..data.transforms import build_eval_transform

        cfg = ctx.cfg
        sel = cfg.get("select") or {}
        val, describe = self.selection_set(cfg, cfg["data"])
        if val is None:
            return
        self.selector = ModelSelector(ctx.exp_dir, val, build_eval_transform(cfg.get("augment")),
                                      sel.get("on", "pseudo"), val.class_names, ctx.device, cfg=cfg,
                                      scales=sel.get("scales", [1.0]), flip=sel.get("flip", False),
                                      describe=describe, log=ctx.log)
        if not resumed:
            self.selector.reset()
        self.selector(self, ctx.epoch, ctx.step)

    def on_epoch_end(self, ctx):
        if self.selector is not None:
            self.selector(self, ctx.epoch + 1, ctx.step)
