"""Training tasks of the saliency stage for :class:`wsss.engine.Trainer`.

- :class:`C2AMTask` (``--method ccam``): the C2AM contrastive losses plus, when
  ``method.hint_weight > 0``, the C2AM-H hint loss on ``maps["hint"]``. Without hints it runs
  CCAM's flip check on the last batch of the first epoch.
- :class:`PoolNetTask` (``--method poolnet``): per-image summed BCE-with-logits towards
  ``maps["saliency"]`` on the ``maps["valid"]`` pixels (PoolNet's ``reduction='sum'`` divided by
  the batch; the engine's ``accumulate`` plays PoolNet's ``iter_size``).
"""

import torch
import torch.nn.functional as F

from ..backbones import build_backbone
from ..engine import TaskModule, param_groups_4
from ..engine.checkpoint import load_backbone_from
from ..errors import ConfigError
from .ccam import C2AM, is_background_map
from .losses import contrastive_losses, hint_loss
from .poolnet import PoolNet

def backbone_from_config(cfg, default_norm="train"):
    """``build_backbone`` from ``cfg["model"]`` (``backbone``, ``output_stride`` 16, ``norm_mode``,
    ``weights``, ``backbone_kwargs`` e.g. ``{width: 32}`` for resnet18), then optionally
    ``backbone_init``: the backbone of another wsss experiment's checkpoint (under
    ``backbone_init_prefix``, e.g. ``net.backbone.``; found when only one fits)."""
    m = cfg.get("model") or {}
    if "backbone" not in m:
        raise ConfigError("model.backbone is not set", fix="add model.backbone (e.g. resnet50) to the config")
    backbone = build_backbone(m["backbone"], output_stride=int(m.get("output_stride", 16)),
                              norm_mode=m.get("norm_mode", default_norm), weights=m.get("weights"),
                              **(m.get("backbone_kwargs") or {}))
    if m.get("backbone_init"):
        load_backbone_from(backbone, m["backbone_init"], m.get("backbone_init_prefix"))
    return backbone


class C2AMTask(TaskModule):
    """C2AM / C2AM-H training (``method``: ``alpha``, ``hint_weight``, ``hint_threshold``,
    ``hint_smoothing``, ``flip_check`` (auto = only without hints), ``flip_border``)."""

    def __init__(self, cfg, num_classes=None):
        super().__init__()
        meth = cfg.get("method") or {}
        self.model = C2AM(backbone_from_config(cfg))
        self.alpha = float(meth.get("alpha", 0.25))
        self.hint_weight = float(meth.get("hint_weight", 1.0))
        self.hint_threshold = float(meth.get("hint_threshold", 0.4))
        self.hint_smoothing = float(meth.get("hint_smoothing", 0.1))
        flip = meth.get("flip_check", "auto")
        self.flip_check = self.hint_weight == 0 if flip == "auto" else bool(flip)
        self.flip_border = int(meth.get("flip_border", 4))

    def param_groups(self):
        return {"main": param_groups_4(self.model.backbone, self.model.head())}

    def training_step(self, batch, ctx):
        out = self.model(batch["image"])
        terms = contrastive_losses(out["fg"], out["bg"], self.alpha)
        loss = terms["sim_fg"] + terms["sim_bg_fg"] + terms["sim_bg"]
        logs = {k: v.detach() for k, v in terms.items()}
        if self.hint_weight > 0:
            maps = batch.get("maps") or {}
            if "hint" not in maps:
                raise ConfigError("C2AM-H needs CAM hints in the batch (maps['hint'])",
                                  fix="set method.cam_dir, or method.hint_weight=0 for plain C2AM")
            lh = hint_loss(out["logits"], maps["hint"], self.hint_threshold, self.hint_smoothing)
            loss = loss + self.hint_weight * lh
            logs["hint"] = lh.detach()
        if self.flip_check and ctx.epoch == 0 and ctx.step == ctx.steps_per_epoch - 1 and \
                ctx.micro == ctx.accumulate - 1:
            flipped = is_background_map(torch.sigmoid(out["logits"].detach()), self.flip_border)
            self.model.flipped.fill_(flipped)
        logs["flipped"] = float(self.model.flipped)
        return {"loss": loss, **logs}


class PoolNetTask(TaskModule):
    """PoolNet training on saliency targets (``model.width``: decoder base width, 128 published;
    ``model.init``: normal (published N(0, 0.01)) or kaiming)."""

    def __init__(self, cfg, num_classes=None):
        super().__init__()
        m = cfg.get("model") or {}
        # PoolNet's backbone keeps BN at its ImageNet statistics with frozen affine parameters.
        backbone = backbone_from_config(cfg, default_norm="frozen_affine")
        self.model = PoolNet(backbone, width=int(m.get("width", 128)), init=m.get("init", "normal"))

    def param_groups(self):
        # One learning rate for every layer, as PoolNet's solver (Adam over all trainable parameters).
        return {"main": [{"params": [p for p in self.model.parameters() if p.requires_grad], "lr_mult": 1.0}]}

    def training_step(self, batch, ctx):
        logits = self.model(batch["image"])[:, 0]
        maps = batch.get("maps") or {}
        if "saliency" not in maps:
            raise ConfigError("PoolNet needs saliency targets in the batch (maps['saliency'])",
                              fix="set method.sal_dir to a folder of <id>.png saliency maps")
        target = maps["saliency"].to(logits.dtype)
        valid = maps.get("valid", torch.ones_like(target)).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, target, weight=valid, reduction="sum")
        return {"loss": bce / logits.shape[0], "bce_px": bce.detach() / valid.sum().clamp_min(1)}
