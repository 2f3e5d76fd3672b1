"""Training tasks of the saliency stage for :class:`wsss.engine.Trainer`.

- :class:`C2AMTask` (``--method ccam``): the C2AM contrastive losses plus, when
  ``method.hint_weight > 0``, the C2AM-H hint loss on ``maps["hint"]``. Without hints it runs
  CCAM's flip check on the last batch of the first epoch.
- :class:`PoolNetTask` (``--method poolnet``): per-image summed BCE-with-logits towards
  ``maps["saliency"]`` on the ``maps["valid"]`` pixels (PoolNet's ``reduction='sum'`` divided by
  the batch; the engine's ``accumulate`` plays PoolNet's ``iter_size``).
"""

from pathlib import Path

import torch
import torch.nn.functional as F

from ..backbones import backbone_from_config
from ..engine import Option, TaskModule, param_groups_4
from ..errors import ConfigError
from . import SALIENCY_TASKS
from .ccam import C2AM, is_background_map
from .datasets import CamHintDataset, SaliencyTargetDataset, build_saliency_transform
from .losses import contrastive_losses, hint_loss
from .poolnet import PoolNet


def method_dir(opts, key, method):
    """The folder ``method.<key>`` of a ``method`` section (ConfigError when unset)."""
    value = (opts or {}).get(key)
    if not value:
        raise ConfigError(f"method.{key} is not set", fix=f"pass method.{key}=<folder> (see configs/*/{method}.yaml)")
    return Path(value)


def _base_dataset(data):
    from ..data import build_dataset

    return build_dataset(data["dataset"], data["root"], data.get("train_split", "train"))


@SALIENCY_TASKS.register("ccam")
class C2AMTask(TaskModule):
    """C2AM / C2AM-H training (options below); trains on the images with ``maps["hint"]``,
    the CAMs of ``method.cam_dir`` (none when ``hint_weight`` is 0)."""

    name = "ccam"
    options = {
        "alpha": Option(0.25, "rank weights exp(-alpha * rank) of the contrastive losses"),
        "hint_weight": Option(1.0, "weight of C2AM-H's hint loss (0: plain C2AM)"),
        "hint_threshold": Option(0.4, "pixels whose max foreground CAM is >= this are hinted foreground"),
        "hint_smoothing": Option(0.1, "label smoothing of the hint BCE (target 1 - s / 2)"),
        "flip_check": Option("auto", "CCAM's polarity check after epoch 1 (auto: only without hints)"),
        "flip_border": Option(4, "border strips (pixels of the activation map) of the flip check"),
        "cam_dir": Option(None, "folder of the training split's CAM files (the hints)"),
    }
    exports = ("model",)

    def __init__(self, cfg, num_classes=None):
        super().__init__(cfg, num_classes)
        m = self.opts
        self.model = C2AM(backbone_from_config(cfg.get("model")))
        self.alpha = float(m["alpha"])
        self.hint_weight = float(m["hint_weight"])
        self.hint_threshold = float(m["hint_threshold"])
        self.hint_smoothing = float(m["hint_smoothing"])
        flip = m["flip_check"]
        self.flip_check = self.hint_weight == 0 if flip == "auto" else bool(flip)
        self.flip_border = int(m["flip_border"])

    @classmethod
    def train_dataset(cls, cfg, data):
        from ..data import LabelsOnly

        opts, base = cls.effective_options(cfg), _base_dataset(data)
        if float(opts["hint_weight"]) > 0:
            base = CamHintDataset(base, method_dir(opts, "cam_dir", "ccam"))
        # weakly supervised like the CAMs: no ground-truth mask in its batches
        return LabelsOnly(base, build_saliency_transform(cfg.get("augment")))

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


@SALIENCY_TASKS.register("poolnet")
class PoolNetTask(TaskModule):
    """PoolNet training on the saliency PNGs of ``method.sal_dir`` (``model.width``: decoder base
    width, 128 published; ``model.init``: normal (published N(0, 0.01)) or kaiming)."""

    name = "poolnet"
    options = {"sal_dir": Option(None, "folder of <id>.png 0..255 saliency maps of the training split (targets)")}
    exports = ("model",)

    def __init__(self, cfg, num_classes=None):
        super().__init__(cfg, num_classes)
        m = cfg.get("model") or {}
        # PoolNet's backbone keeps BN at its ImageNet statistics with frozen affine parameters.
        backbone = backbone_from_config(m, norm_mode="frozen_affine")
        self.model = PoolNet(backbone, width=int(m.get("width", 128)), init=m.get("init", "normal"))

    @classmethod
    def train_dataset(cls, cfg, data):
        return SaliencyTargetDataset(_base_dataset(data), method_dir(cls.effective_options(cfg), "sal_dir", "poolnet"),
                                     build_saliency_transform(cfg.get("augment")))

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
