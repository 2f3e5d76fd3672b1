"""AEFT-GPP (``--method aeft``): a CAM classifier with Gated Pyramid Pooling, trained by
classification alone, then from epoch T also with the adversarial erasing triplet.

Network (:class:`AEFTNet`): backbone -> ``fc8`` (1x1, input width -> 256, no bias) -> ReLU ->
``fc9`` (1x1, 256 -> C, no bias) = A, the CAMs; G = GPP(A) (:mod:`wsss.cams.gpp`); logits
o = GAP(relu A * relu G) - GAP(relu(-A) * relu(-G)). Inference uses A.

Objective (:mod:`wsss.cams.triplet`), epochs ``< switch_epoch`` (T = 18) at batch
``warmup_batch_size`` (8), then ``train.batch_size`` (32):

    L = MLSM(o, y~)                                                      epochs < T
    L = MLSM(o, y~) + 0.2 L_att + 0.15 L_rep                             epochs >= T
    x_p   = x * a [a < 0.6],  a = max_c(maxnorm(up(relu A)) y)           positive (soft erased) image
    L_att = mean_{b,c} |GAP(relu G(x_p)) y - GAP(relu G(x)) y|
    L_rep = mean_{b: d_b < 0.5} relu(0.5 - d_b)   when more than 4 such b, else 0
    d_b   = || anchor_b - whole_{n(b)} y_b ||^2,  n(b) an image of the batch sharing no class with b

The repulsion's negatives come from the whole global batch (``wsss.engine.all_gather_grad``),
drawn by a generator seeded from (``train.seed``, step, micro-batch), so every rank draws the
same and a resumed run the same again. A batch where no image has a class-disjoint partner
skips the term.

The reference's quirks (docs/methods/aeft.md, KAIST-vilab/AEFT @ dc81899), each an option:
``cls_samples: 8`` (classification on the first 8 samples only after T), ``poly_max_step:
warmup_batch`` (the poly schedule counted as if every epoch ran at batch 8, so the lr never
reaches 0), ``new_lr_mult: 1`` (no 10x lr on fc8/fc9/GPP), ``detach_mask: false`` (gradients
through the soft mask), ``negative_mask: negative`` (the negative's vector masked by its own
labels). The reference's choice of the CAM epoch on ground truth is not offered.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import backbone_from_config
from ..engine import Option, all_gather_grad, param_groups_4
from ..errors import ConfigError
from .base import METHODS, CAMMethod
from .gpp import GRIDS, GatedPyramidPooling, signed_logits
from .losses import gap2d, mlsm
from .triplet import attraction, positive_mask, repulsion, select_negatives, triplet_vectors


class AEFTNet(nn.Module):
    """``forward(x) -> (logits (B, C), cams A (B, C, h, w), gated G (B, C, h, w))``.

    ``fc8`` / ``fc9`` keep the reference's names (Xavier-uniform init, as there) and read the
    backbone's ``feature`` map (``c5``) whatever its width; ``gpp`` holds ``gconv1..3``.
    ``grids=None`` builds the poster's GAP baseline: no GPP, logits GAP(A), G = A."""

    def __init__(self, backbone, num_classes, hidden=256, feature="c5", grids=GRIDS):
        super().__init__()
        if feature not in backbone.channels:
            raise ConfigError(f"the backbone has no feature {feature!r}",
                              fix=f"method.feature: one of {', '.join(backbone.channels)}")
        self.backbone = backbone
        self.feature = feature
        self.fc8 = nn.Conv2d(backbone.channels[feature], int(hidden), 1, bias=False)
        self.fc9 = nn.Conv2d(int(hidden), num_classes, 1, bias=False)
        nn.init.xavier_uniform_(self.fc8.weight)
        nn.init.xavier_uniform_(self.fc9.weight)
        self.gpp = GatedPyramidPooling(num_classes, grids) if grids else None

    def heads(self):
        """The layers AEFT adds to the backbone."""
        return [m for m in (self.fc8, self.fc9, self.gpp) if m is not None]

    def cams(self, x):
        return self.fc9(F.relu(self.fc8(self.backbone(x)[self.feature])))

    def forward(self, x):
        cams = self.cams(x)
        if self.gpp is None:
            return gap2d(cams), cams, cams
        gated = self.gpp(cams)
        return signed_logits(cams, gated), cams, gated

    @classmethod
    def from_config(cls, cfg, num_classes, opts):
        """From ``cfg["model"]`` (:func:`wsss.backbones.backbone_from_config`; ``frozen_prefixes``
        freezes backbone parameters, psa's ``[conv1a, b2]``) and the method's options."""
        from ..segmentation.deeplab import freeze_prefixes

        model = cfg.get("model") or {}
        backbone = backbone_from_config(model)
        freeze_prefixes(backbone, tuple(model.get("frozen_prefixes") or ()))
        grids = opts["grids"] if opts["gpp"] else None
        return cls(backbone, num_classes, hidden=opts["hidden"], feature=opts["feature"], grids=grids)


NEGATIVE_MASKS = ("anchor", "negative")
POLY_STEPS = ("run", "warmup_batch")


@METHODS.register("aeft")
class AEFT(CAMMethod):
    """AEFT-GPP; see the module docstring and docs/methods/aeft.md."""

    name = "aeft"
    relu_after_upsample = True  # AEFT's inference: upsample each view, then ReLU
    options = {
        "switch_epoch": Option(18, "T: the triplet terms start at this epoch (0-based); before it, classification alone"),
        "warmup_batch_size": Option(8, "batch size of the epochs before T (train.batch_size from T on)"),
        "hidden": Option(256, "width of fc8"),
        "feature": Option("c5", "backbone feature map read by fc8"),
        "grids": Option(list(GRIDS), "GPP grid sizes, coarse to fine"),
        "gpp": Option(True, "false: the GAP baseline of the poster's ablation (logits GAP(A), the triplet on A)"),
        "erase_threshold": Option(0.6, "the positive image keeps x * a where a < this (TH[0])"),
        "low_threshold": Option(0.2, "the anchor's weakly activated area: maxnorm(A) < this (TH[1])"),
        "attract_weight": Option(0.2, "weight of the attraction (W[1])"),
        "repel_weight": Option(0.15, "weight of the repulsion (W[2])"),
        "margin": Option(0.5, "repulsion margin M; pairs closer than M are hard"),
        "min_hard": Option(4, "the repulsion applies only with more than this many hard pairs"),
        "detach_mask": Option(True, "no gradient through the soft erasing mask (false: the reference)"),
        "negative_mask": Option("anchor", "mask the negative's vector by the anchor's labels, or by its own "
                                          "('negative': the reference; the distance becomes a sum of norms)"),
        "cls_samples": Option(None, "after T, classify only the first N images of the batch (reference: 8; null: all)"),
        "poly_max_step": Option("run", "poly schedule over the steps run ('run'), or as if every epoch ran at "
                                       "warmup_batch_size ('warmup_batch': the reference, lr never reaches 0)"),
        "new_lr_mult": Option(10.0, "lr multiplier of fc8, fc9 and GPP (psa lineage; reference: 1)"),
    }

    def __init__(self, cfg, num_classes):
        super().__init__(cfg, num_classes)
        m = self.opts
        self.switch_epoch = int(m["switch_epoch"])
        self.warmup_batch_size = int(m["warmup_batch_size"])
        if self.switch_epoch < 0 or self.warmup_batch_size < 1:
            raise ConfigError(f"method.switch_epoch={m['switch_epoch']!r} must be >= 0 and "
                              f"method.warmup_batch_size={m['warmup_batch_size']!r} >= 1")
        for key, allowed in (("negative_mask", NEGATIVE_MASKS), ("poly_max_step", POLY_STEPS)):
            if m[key] not in allowed:
                raise ConfigError(f"method.{key}={m[key]!r}", fix=f"use one of {', '.join(allowed)}")
        self.cls_samples = None if m["cls_samples"] is None else int(m["cls_samples"])
        self.net = AEFTNet.from_config(cfg, num_classes, m)

    # ------------------------------------------------------------------ engine
    def param_groups(self):
        return {"main": param_groups_4(self.net.backbone, self.net.heads(), new_mult=float(self.opts["new_lr_mult"]))}

    def epoch_batch_size(self, epoch, batch_size):
        return self.warmup_batch_size if epoch < self.switch_epoch else batch_size

    def lr_schedule_steps(self, epoch_steps):
        if self.opts["poly_max_step"] == "run":
            return sum(epoch_steps)
        if self.switch_epoch < 1:
            raise ConfigError("method.poly_max_step=warmup_batch counts the steps of a warm-up epoch, but "
                              "method.switch_epoch is 0", fix="use poly_max_step=run or switch_epoch >= 1")
        return epoch_steps[0] * len(epoch_steps)

    # ---------------------------------------------------------------- training
    def training_step(self, batch, ctx):
        x, y = batch["image"], batch["label"]
        logits, cams, gated = self.net(x)
        if ctx.epoch < self.switch_epoch:
            cls = mlsm(logits, self.smooth(y))
            return {"loss": cls, "cls": cls.detach()}

        cls = self.classification(logits, y)
        mask = positive_mask(cams, y, x.shape[-2:], float(self.opts["erase_threshold"]))
        if self.opts["detach_mask"]:
            mask = mask.detach()
        _, _, gated_pos = self.net(x * mask)
        att = attraction(gated, gated_pos, y)
        rep, hard = self.repulsion(cams, gated, y, ctx)
        loss = cls + float(self.opts["attract_weight"]) * att + float(self.opts["repel_weight"]) * rep
        return {"loss": loss, "cls": cls.detach(), "attract": att.detach(), "repel": rep.detach(),
                "hard": float(hard), "erased": mask.detach().mean()}

    def classification(self, logits, labels):
        """MLSM of the batch, or (``cls_samples``, the reference) of the first N images of the
        global batch (every rank computes it on the gathered logits)."""
        if self.cls_samples is None:
            return mlsm(logits, self.smooth(labels))
        n = self.cls_samples
        return mlsm(all_gather_grad(logits)[:n], self.smooth(all_gather_grad(labels))[:n])

    def repulsion(self, cams, gated, labels, ctx):
        """The repulsion over the global batch: ``(loss, hard pairs)``."""
        anchor, whole = triplet_vectors(cams.float(), gated.float(), labels, float(self.opts["low_threshold"]))
        anchor, whole, labels = all_gather_grad(anchor), all_gather_grad(whole), all_gather_grad(labels)
        negatives = select_negatives(labels, self.negative_generator(ctx))
        return repulsion(anchor, whole, labels, negatives, float(self.opts["margin"]), int(self.opts["min_hard"]),
                         mask_by=self.opts["negative_mask"])

    @staticmethod
    def negative_generator(ctx):
        """A CPU generator seeded from (train.seed, step, micro-batch): the same on every rank
        and again after a resume."""
        seed = int(((ctx.cfg or {}).get("train") or {}).get("seed", 0))
        return torch.Generator().manual_seed((seed * 1_000_003 + ctx.step) * 64 + ctx.micro)

    # --------------------------------------------------------------- inference
    def cam_forward(self, images):
        return self.net.cams(images)
