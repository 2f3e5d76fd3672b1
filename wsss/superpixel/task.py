"""Training of the association network (``--method psam``; docs/methods/spcam.md, "Superpixel
network training").

Per batch of augmented crops (sides multiples of 16) with their saliency maps and, optionally,
the CAMs of a first CAM experiment (``method.cam_dir``):

    Q = SpixelNet(x)
    L = L_rec(Q; one-hot(saliency > 0.2), xy)                                   (reconstruction)
      + [step > 0.7 max_step] (press + 2 diff)(ASAM(Q); cell labels of pool(CAMs, Q))

SP-CAM's recipe: Adam 5e-4, no weight decay, no lr schedule (``train.poly_power: 0``), batch
32, 150 epochs of crops 512 (resize 320-640, flip), initialised from SpixelFCN's BSDS model
(``model.weights``). The reference's script (train_Q.py) cannot run as released (an undefined
name in its logging, line 324); this is the loss it writes. The affinity terms are skipped
without ``cam_dir`` (logged as 0).
"""

import torch

from ..backbones.weights import read_checkpoint
from ..engine import Option, TaskModule
from ..engine.checkpoint import load_weights
from ..saliency.task import method_dir
from . import SUPERPIXEL_TASKS
from .data import CamStackMap, batch_saliency, check_crop, saliency_sources
from .losses import affinity_losses, binary_target, cell_labels, reconstruction_loss
from .net import SpixelNet
from .ops import cell_affinity, pool_cells


@SUPERPIXEL_TASKS.register("psam")
class AssociationTask(TaskModule):
    """SpixelFCN's network trained with SP-CAM's losses; ``net`` is the association network
    that SP-CAM loads (``method.superpixel_exp``)."""

    name = "psam"
    options = {
        "sal_dir": Option(None, "folder of <id>.png 0..255 saliency maps of the training split"),
        "saliency_resize": Option("nearest", "how saliency follows the augmentation: nearest (reference) | bilinear"),
        "sal_threshold": Option(0.2, "the semantic target is one-hot(saliency > sal_threshold)"),
        "pos_weight": Option(0.003, "m: weight of the position term (divided by the cell size S = 16)"),
        "loss_scale": Option(0.005, "overall factor of the reconstruction loss"),
        "cam_dir": Option(None, "CAM files of the training split (first CAM); unset: no affinity terms"),
        "cam_channels": Option(8, "CAM channels kept per image (present classes, zero-padded)"),
        "affinity_from": Option(0.7, "fraction of training after which the affinity terms are added"),
        "bg_score": Option(0.05, "background score of the cell labels"),
        "bg_step": Option(0.5, "a cell is ignored when its label changes with the background raised by this"),
        "fg_ratio": Option(0.05, "a foreground cell is ignored when its 2nd CAM > fg_ratio x its 1st"),
        "press_threshold": Option(0.75, "self-affinity bound of the press term"),
        "press_min_same": Option(15, "press applies where more than this many of the 25 neighbours share the label"),
        "diff_weight": Option(2.0, "weight of the diff term"),
    }
    exports = ("net",)

    def __init__(self, cfg, num_classes=None):
        super().__init__(cfg, num_classes)
        m = self.opts
        self.net = SpixelNet()
        weights = (cfg.get("model") or {}).get("weights")
        if weights:  # e.g. SpixelFCN's SpixelNet_bsd_ckpt.tar ({'state_dict': ...})
            load_weights(self.net, read_checkpoint(weights)[0], strict=True, path=weights)
        self.cell = self.net.cell
        self.sal_threshold = float(m["sal_threshold"])
        self.pos_weight, self.loss_scale = float(m["pos_weight"]), float(m["loss_scale"])
        self.use_cams = bool(m["cam_dir"])
        self.affinity_from = float(m["affinity_from"])
        self.label_args = (float(m["bg_score"]), float(m["bg_step"]), float(m["fg_ratio"]))
        self.press_args = (float(m["press_threshold"]), int(m["press_min_same"]))
        self.diff_weight = float(m["diff_weight"])

    @classmethod
    def train_dataset(cls, cfg, data):
        from ..data import LabelsOnly, build_dataset
        from ..data.maps import attach_maps
        from ..data.transforms import build_train_transform

        m = cls.effective_options(cfg)
        check_crop(cfg, SpixelNet.cell)
        sources = saliency_sources(method_dir(m, "sal_dir", "superpixel"), m["saliency_resize"])
        if m["cam_dir"]:
            sources.append(CamStackMap(m["cam_dir"], m["cam_channels"]))
        base = build_dataset(data["dataset"], data["root"], data.get("train_split", "train"))
        return LabelsOnly(attach_maps(base, *sources), build_train_transform(cfg.get("augment")))

    def param_groups(self):
        # one Adam over every trainable parameter, no weight decay (train.weight_decay: 0)
        return {"main": [{"params": [p for p in self.net.parameters() if p.requires_grad], "lr_mult": 1.0}]}

    def training_step(self, batch, ctx):
        assoc = self.net(batch["image"])
        target = binary_target(batch_saliency(batch["maps"]).to(assoc.dtype), self.sal_threshold)
        loss, sem, pos = reconstruction_loss(assoc, target, self.cell, self.pos_weight, self.loss_scale)
        logs = {"rec": loss.detach(), "sem": sem.detach(), "pos": pos.detach()}
        if self.use_cams and ctx.step > self.affinity_from * ctx.max_step:
            with torch.no_grad():
                labels, ignore = cell_labels(pool_cells(batch["maps"]["cams"].to(assoc.dtype), assoc, self.cell),
                                             *self.label_args)
            press, diff = affinity_losses(cell_affinity(assoc, self.cell), labels, ignore, *self.press_args)
            loss = loss + press + self.diff_weight * diff
            logs.update(press=press.detach(), diff=diff.detach(), ignored=ignore.float().mean())
        return {"loss": loss, **logs}
