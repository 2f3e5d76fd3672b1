"""SP-CAM (``--method spcam``): superpixel-level CAMs with a learnt superpixel network.

Networks: ``net`` (:class:`SPCAMNet`: backbone at output stride 16 -> 1x1 classifier with 1 + C
outputs, background first, no bias -> logits z per stride-16 cell; the DRM of
:mod:`wsss.cams.drm` reconstructs them) and ``spixel``, the association network of a finished
``tools/train_superpixel.py`` experiment (``method.superpixel_exp``), frozen (eval mode, no
gradients, loaded by :func:`wsss.engine.load_network` at the start of a fresh run; a resumed run
and inference take it from this experiment's own checkpoint). Per batch (docs/methods/spcam.md):

    Q = spixel(x);  z^ = DRM(z, x5, Q)
    L = MLSM(GAP(z^)[1:], y) + alpha * MSE(0.5 fg + 0.5 (1 - bg), pool(s, Q))   (alpha 0.5, tau 0.4)

with s the saliency of ``method.sal_dir`` pooled into the cells through Q and fg / bg the
probabilities of the salient present classes / of the background and the other present classes
(:func:`wsss.cams.losses.saliency_guided_loss`). Parameter groups: backbone 1x / 2x, classifier
10x / 20x, DRM ``q_feats`` ``qfeat_lr_mult`` (10x) weights / 2x that for biases, DRM
``tran_conv`` ``tran_lr_mult`` (500x) / 1000x (the reference's ``--drm_lr2``); biases without
weight decay.

Inference (method-owned hooks): each view (scale, flip) is resized to the next multiple of 16,
``P = softmax(z^)`` per cell (background included), ``walk_steps`` steps of the superpixel
random walk ``P <- A P`` on the cells (A = ASAM of Q), upsampled to pixels through Q, resized
back; views are summed; each class channel is divided by its maximum; the background channel is
the constant ``bg_threshold``, stored in the CAM file (``cam_bg`` / ``hr_cam_bg``), so that
evaluation and pseudo masks use it as SP-CAM does, with no threshold chosen on ground truth.
``store_background: false`` drops it and lets ``tools/evaluate.py --mode cam`` sweep the
threshold against the ground truth instead (the reference's protocol, which also picks
``walk_steps`` on the ground truth: run inference once per value).
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import backbone_from_config
from ..engine import Option, check_experiment, load_network, param_groups_4
from ..errors import ConfigError
from ..superpixel.data import batch_saliency, check_crop, saliency_sources
from ..superpixel.net import SpixelNet
from ..superpixel.ops import cell_affinity, pool_cells, upsample_cells, walk_cells
from .base import METHODS, CAMMethod
from .drm import DRM
from .inference import normalise_max
from .losses import gap2d, mlsm, saliency_guided_loss

#: how to make the superpixel experiment, for error messages
TRAIN_SUPERPIXEL = ("train the association network first: tools/train_superpixel.py --config "
                    "configs/<dataset>/superpixel.yaml --exp DIR method.sal_dir=... (runners/1-priors.sh METHOD=spcam)")


class SPCAMNet(nn.Module):
    """``forward(x, assoc) -> (reconstructed logits, logits)``, both (B, 1 + C, H/16, W/16)."""

    def __init__(self, backbone, num_classes, q_width=32, widths=(1024, 256, 128), circular=True):
        super().__init__()
        if backbone.output_stride != 16:
            raise ConfigError(f"SP-CAM needs a backbone at output stride 16 (one logit per 16-px cell), got "
                              f"{backbone.output_stride}", fix="set model.output_stride: 16")
        self.backbone = backbone
        self.head = nn.Conv2d(backbone.channels["c5"], num_classes + 1, 1, bias=False)
        nn.init.kaiming_normal_(self.head.weight)
        self.drm = DRM(backbone.channels["c5"], q_width, widths, circular)

    def forward(self, x, assoc):
        x5 = self.backbone(x)["c5"]
        logits = self.head(x5)
        return self.drm.reconstruct(logits, *self.drm(x5, assoc)), logits


@METHODS.register("spcam")
class SPCAM(CAMMethod):
    """SP-CAM: the classifier with a DRM, the saliency-guided loss and the superpixel inference."""

    name = "spcam"
    options = {
        "sal_dir": Option(None, "folder of <id>.png 0..255 saliency maps of the training split"),
        "saliency_resize": Option("nearest", "how saliency follows the augmentation: nearest (reference) | bilinear"),
        "superpixel_exp": Option(None, "finished tools/train_superpixel.py experiment (the frozen association network)"),
        "alpha": Option(0.5, "weight of the saliency-guided loss"),
        "tau": Option(0.4, "IoU with the saliency above which a present class counts as salient"),
        "fg_weight": Option(0.5, "the saliency prediction is fg_weight fg + (1 - fg_weight)(1 - bg)"),
        "q_width": Option(32, "width of the DRM's association features (x1, x2, x4, x4)"),
        "drm_widths": Option([1024, 256, 128], "widths of the DRM's transform convolutions"),
        "circular_padding": Option(True, "circular padding of the dilated association conv (reference)"),
        "qfeat_lr_mult": Option(10.0, "lr multiplier of the DRM's association convs (biases: 2x this)"),
        "tran_lr_mult": Option(500.0, "lr multiplier of the DRM's transform convs (biases: 2x this)"),
        "walk_steps": Option(20, "inference: steps of the superpixel random walk on the cells (r)"),
        "bg_threshold": Option(0.3, "inference: the constant background score (th)"),
        "store_background": Option(True, "inference: store the constant background in the CAM files "
                                         "(false: evaluate sweeps it against the ground truth)"),
    }
    exports = ("net", "spixel")

    def __init__(self, cfg, num_classes):
        super().__init__(cfg, num_classes)
        m = self.opts
        backbone = backbone_from_config(cfg.get("model"), norm_mode="frozen")
        self.net = SPCAMNet(backbone, num_classes, int(m["q_width"]), tuple(m["drm_widths"]),
                            bool(m["circular_padding"]))
        self.spixel = SpixelNet().requires_grad_(False).eval()
        self.cell = self.spixel.cell
        self.superpixel_exp = m["superpixel_exp"]
        self.alpha, self.tau, self.fg_weight = float(m["alpha"]), float(m["tau"]), float(m["fg_weight"])
        self.lr_mults = (float(m["qfeat_lr_mult"]), float(m["tran_lr_mult"]))
        self.walk_steps, self.bg_threshold = int(m["walk_steps"]), float(m["bg_threshold"])
        self.background = bool(m["store_background"])

    # ------------------------------------------------------------------ networks
    @classmethod
    def train_dataset(cls, cfg, data):
        from ..data import LabelsOnly, build_dataset
        from ..data.maps import attach_maps
        from ..saliency.task import method_dir

        m = cls.effective_options(cfg)
        check_superpixel_experiment(m["superpixel_exp"])  # fail before anything heavy
        check_crop(cfg, SpixelNet.cell)
        sources = saliency_sources(method_dir(m, "sal_dir", "spcam"), m["saliency_resize"])
        base = build_dataset(data["dataset"], data["root"], data.get("train_split", "train"))
        return LabelsOnly(attach_maps(base, *sources), cls.train_transform(cfg))

    def load_superpixel(self, exp_dir=None):
        """Load the association network (``net`` of a superpixel experiment) from ``exp_dir``
        (default ``method.superpixel_exp``)."""
        exp_dir = exp_dir or self.superpixel_exp
        check_superpixel_experiment(exp_dir)
        load_network(self.spixel, exp_dir, prefix="net.", finished=True, what="superpixel network",
                     fix=f"point method.superpixel_exp to a finished superpixel experiment ({TRAIN_SUPERPIXEL})")
        self.spixel.eval()

    def on_train_start(self, ctx, resumed):
        if not resumed:
            self.load_superpixel()

    def train(self, mode=True):
        super().train(mode)
        self.spixel.eval()  # frozen: BatchNorm on its running statistics
        return self

    def param_groups(self):
        drm = self.net.drm
        groups = param_groups_4(self.net.backbone, self.net.head)
        for part, module, mult in zip(("q_feats", "tran_conv"), (drm.q_feats, drm.tran_conv), self.lr_mults):
            groups += [dict(g, name=f"drm.{part}.{g['name'].split('.')[-1]}")
                       for g in param_groups_4([], module, new_mult=mult)]
        return {"main": groups}

    def associations(self, x):
        """Q of the frozen association network (no gradient)."""
        with torch.no_grad():
            return self.spixel(x)

    # --------------------------------------------------------------------- training
    def training_step(self, batch, ctx):
        x, labels = batch["image"], batch["label"]
        assoc = self.associations(x)
        logits, _ = self.net(x, assoc)
        cls = mlsm(gap2d(logits)[:, 1:], self.smooth(labels))
        saliency = pool_cells(batch_saliency(batch["maps"]).to(assoc.dtype), assoc, self.cell)
        sal = saliency_guided_loss(logits, saliency, labels, self.tau, self.fg_weight)
        return {"loss": cls + self.alpha * sal, "cls": cls.detach(), "sal": sal.detach()}

    # -------------------------------------------------------------------- inference
    def _cells(self, images):
        """``(logits, Q, resized)`` of images resized to the next multiple of 16 (bilinear)."""
        h, w = images.shape[-2:]
        size = (-(-h // self.cell) * self.cell, -(-w // self.cell) * self.cell)
        resized = size != (h, w)
        x = F.interpolate(images, size, mode="bilinear", align_corners=False) if resized else images
        assoc = self.associations(x)
        return self.net(x, assoc)[0], assoc, resized

    def cam_forward(self, images):
        return self._cells(images)[0]

    def view_maps(self, images, labels):
        """Per view: softmax over 1 + C, ``walk_steps`` walk steps on the cells, upsampling
        through Q, resized back to the view (background channel dropped unless stored)."""
        logits, assoc, resized = self._cells(images)
        prob = logits.float().softmax(1)
        if self.walk_steps:
            prob = walk_cells(prob, cell_affinity(assoc.float(), self.cell), self.walk_steps)
        prob = upsample_cells(prob, assoc.float(), self.cell)
        if resized:
            prob = F.interpolate(prob, images.shape[-2:], mode="bilinear", align_corners=False)
        return prob if self.background else prob[:, 1:]

    def combine(self, maps):
        """Classes divided by their maximum + 1e-5; the background (when stored) = ``bg_threshold``."""
        if not self.background:
            return normalise_max(maps)
        return torch.cat([torch.full_like(maps[:1], self.bg_threshold), normalise_max(maps[1:])])

    def infer_cams(self, inputs, size, keys, **kw):
        # the views' maps cover the image exactly (no stride-16 padding to crop)
        return super().infer_cams(inputs, size, keys, **{**kw, "hr_stride": 1})


def check_superpixel_experiment(exp_dir):
    """Validate a finished superpixel experiment (:func:`wsss.engine.check_experiment`); returns
    its checkpoint path."""
    if not exp_dir:
        raise ConfigError("SP-CAM needs an association network: method.superpixel_exp is not set",
                          fix=f"{TRAIN_SUPERPIXEL}, then pass method.superpixel_exp=DIR")
    return check_experiment(exp_dir, kind="superpixel", fix=TRAIN_SUPERPIXEL)
