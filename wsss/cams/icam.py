"""ICAM (``--method icam``): importance-sampling CAMs with the feature-similarity loss.

Jonnarth & Felsberg, arXiv 2203.12459; reference arvijj/icam @ 5f04fdc. See docs/methods/icam.md.

Network (:class:`ICAMNet`): backbone -> Dropout2d(0.5) -> ``fc8`` (1x1, no bias, C + 1 outputs,
background first) = logits z; p = softmax_c(z); SEAM's PCM (:mod:`wsss.cams.pcm`) on z gives
z_rv and p_rv = softmax_c(z_rv). Each step runs the crop x1 and x2 = x1 rescaled by 0.3
(bilinear, align_corners=True); with y the multi-hot label, y^ = [1, y], MLSM the multi-label
soft-margin loss (mean over every element) and logit(p) = log(p(1 - e) + e) - log(1 - p(1 - e)):

    G_k  = MLSM(GAP(z_k)[fg], y)                                       GAP of the raw logits
    I_k  = MLSM(logit(p_k[b, c, i_s]), y_c)[fg],  i_s ~ p_k[b, c, :] / sum, s = 1..100
    R_k  = MLSM(logit(max_hw p_rv_k), y^)                              background included
    ER   = |p1 - p2| + |p1_rv - p2_rv| + |p1 - p1_rv| + |p2 - p2_rv|  (means; scale 1 resized to 2)
    ECR  = |p1 - p2_rv| + |p2 - p1_rv|
    FS   = feature similarity of p1 and the image colours (wsss.cams.feature_similarity)
    L    = (1 - w)(G1 + G2) + w (I1 + I2) + (R1 + R2) + ER + ECR + 0.5 FS,      w = 0.8

Inference (the method's own, :meth:`ICAM.view_maps` / :meth:`ICAM.combine`): per view the mean
of the two heads, 0.5 p + 0.5 p_rv, conditioned on the image label (multiplied by y^ and
renormalised over channels); the mean over views; at each pixel only the arg-max foreground
class keeps its value; each class divided by its maximum + 1e-5; background = 1 - sum of the
classes (stored as ``cam_bg``/``hr_cam_bg``: scored against it, a pixel is foreground where its
value exceeds 0.5, the reference's protocol).
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import backbone_from_config
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..engine import Option, param_groups_4
from ..errors import ConfigError
from .base import METHODS, CAMMethod
from .feature_similarity import DEFAULT_CHUNK, image_feature_similarity
from .inference import accumulate_views, on_device
from .losses import gap2d, mlsm
from .pcm import PCM, PCMFeatures, resize_to

# PCM taps per backbone family (ResNet-38d: psa/SEAM's conv4 and conv5); other backbones: c3, c4.
PCM_TAPS = {"resnet38d": ("b5_pre", "b6_pre")}
DEFAULT_PCM_TAPS = ("c3", "c4")
PCM_INPUTS = ("logits", "seam")
INFER_HEADS = {"mean": (0.5, 0.5), "cam": (1.0, 0.0), "rv": (0.0, 1.0)}  # weights of p and p_rv


def probs_to_logits(p, eps=1e-3):
    """``log(p (1 - eps) + eps) - log(1 - p (1 - eps))``: probabilities -> logits, finite at 0 and 1."""
    q = p * (1.0 - eps)
    return torch.log(q + eps) - torch.log(1.0 - q)


def sample_probs(probs, num_samples, generator=None):
    """Importance sampling of ``probs`` (N, K, h, w): for every (image, channel), ``num_samples``
    pixel indices drawn with replacement with probabilities ``probs[n, k] / sum``; returns the
    gathered values (N, K, num_samples). The draw itself carries no gradient; the gradient
    reaches ``probs`` only through the gathered values. A channel that is zero everywhere is
    sampled uniformly."""
    n, k = probs.shape[:2]
    flat = probs.reshape(n * k, -1)
    weights = flat.detach().float()
    weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, torch.ones_like(weights))
    index = torch.multinomial(weights, int(num_samples), replacement=True, generator=generator)
    return flat.gather(1, index).view(n, k, int(num_samples))


def label_condition(probs, labels, eps=1e-8):
    """``probs * y^ / max(eps, sum_c probs * y^)`` with y^ = [1, labels] (background kept)."""
    y = torch.cat([labels.new_ones(labels.shape[0], 1), labels], dim=1).to(probs.dtype)[:, :, None, None]
    q = probs * y
    return q / q.sum(dim=1, keepdim=True).clamp_min(eps)


def keep_argmax(maps):
    """Zero every value of (K, h, w) that is not the maximum over K at its pixel (ties all kept)."""
    if maps.shape[0] == 0:
        return maps
    return torch.where(maps == maps.amax(dim=0, keepdim=True), maps, torch.zeros_like(maps))


def seam_pcm_input(logits):
    """SEAM's PCM input (``method.pcm_input: seam``): relu of the detached logits, each channel
    max-normalised, background replaced by 1 - the foreground maximum, non-maximal foreground
    values zeroed."""
    with torch.no_grad():
        a = F.relu(logits.detach().float())
        a = F.relu(a - 1e-5) / (a.amax(dim=(2, 3), keepdim=True) + 1e-5)
        fg = a[:, 1:]
        top = fg.amax(dim=1, keepdim=True)
        fg = torch.where(fg < top, torch.zeros_like(fg), fg)
        return torch.cat([1.0 - top, fg], dim=1)


def mean_abs(a, b):
    return (a - b).abs().mean()


class ICAMNet(nn.Module):
    """ICAM's CAM network: ``forward(x)`` -> dict of ``logits`` z (N, C+1, h, w), ``probs``
    softmax(z), ``rv_logits`` PCM(z) and ``rv_probs`` softmax(PCM(z)) (float32).

    Parameter names: ``backbone.*``, ``fc8`` (Xavier-uniform init), ``side.f8_3`` /
    ``side.f8_4`` and ``pcm.f9`` (:mod:`wsss.cams.pcm`)."""

    def __init__(self, backbone, num_classes, taps=None, widths=(64, 128), embed=192, dropout=0.5,
                 pcm_input="logits"):
        super().__init__()
        if pcm_input not in PCM_INPUTS:
            raise ConfigError(f"method.pcm_input={pcm_input!r}", fix=f"use one of {', '.join(PCM_INPUTS)}")
        self.backbone = backbone
        self.taps = tuple(taps or PCM_TAPS.get(getattr(backbone, "name", ""), DEFAULT_PCM_TAPS))
        missing = [t for t in self.taps if t not in backbone.channels]
        if len(self.taps) != 2 or missing:
            raise ConfigError(f"ICAM's PCM needs two backbone taps, got {list(self.taps)} (unknown: {missing})",
                              fix=f"set method.pcm_taps to two of {sorted(backbone.channels)}")
        self.pcm_input = pcm_input
        self.dropout = nn.Dropout2d(float(dropout))
        self.fc8 = nn.Conv2d(backbone.channels["c5"], num_classes + 1, 1, bias=False)
        nn.init.xavier_uniform_(self.fc8.weight)
        self.side = PCMFeatures([backbone.channels[t] for t in self.taps], widths)
        self.pcm = PCM(self.side.out_channels, embed)

    def new_layers(self):
        """The layers trained at 10x lr: fc8, f8_3, f8_4, f9."""
        return [self.fc8, self.side, self.pcm]

    def forward(self, x):
        feats = self.backbone(x)
        z = self.fc8(self.dropout(feats["c5"]))
        f = self.side(x, [feats[t] for t in self.taps], z.shape[-2:])
        z_rv = self.pcm(z if self.pcm_input == "logits" else seam_pcm_input(z), f)
        z = z.float()
        return {"logits": z, "probs": torch.softmax(z, dim=1), "rv_logits": z_rv, "rv_probs": torch.softmax(z_rv, dim=1)}


@METHODS.register("icam")
class ICAM(CAMMethod):
    """ICAM (module docstring); ``net``: :class:`ICAMNet`."""

    name = "icam"
    background = True
    options = {
        "loss_weight": Option(0.8, "w: (1 - w) x GAP term + w x importance-sampling term (0: GAP only, 1: IS only)"),
        "num_samples": Option(100, "pixels drawn per image and channel by the importance sampler"),
        "eps": Option(1e-3, "epsilon of the probability -> logit map of the IS and revised-CAM terms"),
        "rescale": Option(0.3, "scale of the second view (bilinear, align_corners=True)"),
        "fs_weight": Option(0.5, "weight of the feature-similarity loss (0: off)"),
        "fs_mu": Option(2.5, "mu of the feature-similarity colour term"),
        "fs_sigma": Option(5.0, "sigma of its spatial Gaussian, in CAM-grid cells"),
        "fs_window": Option(None, "null: exact over all pairs; R: only pairs within R cells (approximation)"),
        "fs_chunk": Option(DEFAULT_CHUNK, "rows per block of the exact loss (memory ~ chunk x h x w)"),
        "head_dropout": Option(0.5, "Dropout2d before fc8"),
        "pcm_input": Option("logits", "logits: PCM on the raw logits (ICAM); seam: SEAM's detached max-normed map"),
        "pcm_taps": Option(None, "two backbone taps of the PCM side features (null: b5_pre/b6_pre on resnet38d, "
                                 "else c3/c4)"),
        "pcm_widths": Option([64, 128], "widths of f8_3 / f8_4"),
        "pcm_embed": Option(192, "width of f9, the PCM embedding"),
        "rv_weight": Option(1.0, "weight of the revised-CAM terms R1 + R2 (ablation; the reference: 1)"),
        "eq_weight": Option(1.0, "weight of the equivariance terms ER + ECR (ablation; the reference: 1)"),
        "infer_heads": Option("mean", "inference maps: mean (0.5 p + 0.5 p_rv, the reference), cam (p) or rv (p_rv)"),
    }

    def __init__(self, cfg, num_classes):
        super().__init__(cfg, num_classes)
        o = self.opts
        self.loss_weight = float(o["loss_weight"])
        if not 0.0 <= self.loss_weight <= 1.0:
            raise ConfigError(f"method.loss_weight={self.loss_weight} must be in [0, 1]")
        self.num_samples = int(o["num_samples"])
        self.eps, self.rescale = float(o["eps"]), float(o["rescale"])
        self.fs = {"mu": float(o["fs_mu"]), "sigma": float(o["fs_sigma"]), "chunk": int(o["fs_chunk"]),
                   "window": None if o["fs_window"] is None else float(o["fs_window"])}
        self.fs_weight = float(o["fs_weight"])
        self.rv_weight, self.eq_weight = float(o["rv_weight"]), float(o["eq_weight"])
        if o["infer_heads"] not in INFER_HEADS:
            raise ConfigError(f"method.infer_heads={o['infer_heads']!r}", fix=f"use one of {', '.join(INFER_HEADS)}")
        self.infer_heads = o["infer_heads"]
        augment = self.cfg.get("augment") or {}
        self.mean, self.std = augment.get("mean", IMAGENET_MEAN), augment.get("std", IMAGENET_STD)
        model = self.cfg.get("model") or {}
        backbone = backbone_from_config(model)
        from ..segmentation.deeplab import freeze_prefixes

        freeze_prefixes(backbone, tuple(model.get("frozen_prefixes") or ()))
        self.net = ICAMNet(backbone, num_classes, taps=o["pcm_taps"], widths=o["pcm_widths"],
                           embed=int(o["pcm_embed"]), dropout=float(o["head_dropout"]), pcm_input=o["pcm_input"])

    def param_groups(self):
        return {"main": param_groups_4(self.net.backbone, self.net.new_layers())}

    # ------------------------------------------------------------------- losses
    def view_terms(self, out, targets, all_targets):
        """GAP, importance-sampling and revised-CAM terms of one view's outputs."""
        terms = {}
        if self.loss_weight < 1:
            terms["gap"] = mlsm(gap2d(out["logits"])[:, 1:], targets)
        if self.loss_weight > 0:
            draws = probs_to_logits(sample_probs(out["probs"], self.num_samples), self.eps)[:, 1:]
            terms["is"] = mlsm(draws, targets[:, :, None].expand_as(draws))
        rv = probs_to_logits(out["rv_probs"].amax(dim=(2, 3)), self.eps)
        terms["rv"] = mlsm(rv, all_targets)
        return terms

    @staticmethod
    def equivariance_terms(o1, o2):
        """ER and ECR between the two views (scale 1 resized to scale 2's grid)."""
        size = o2["probs"].shape[-2:]
        p1, r1 = resize_to(o1["probs"], size), resize_to(o1["rv_probs"], size)
        p2, r2 = o2["probs"], o2["rv_probs"]
        er = mean_abs(p1, p2) + mean_abs(r1, r2) + mean_abs(p1, r1) + mean_abs(p2, r2)
        ecr = mean_abs(p1, r2) + mean_abs(p2, r1)
        return er, ecr

    def feature_similarity(self, images, probs):
        """FS of scale-1 probabilities and the de-normalised input at their grid."""
        return image_feature_similarity(images, probs, mean=self.mean, std=self.std, **self.fs)

    def training_step(self, batch, ctx):
        x1, labels = batch["image"], batch["label"]
        x2 = F.interpolate(x1, scale_factor=self.rescale, mode="bilinear", align_corners=True)
        targets = self.smooth(labels).float()
        all_targets = torch.cat([targets.new_ones(targets.shape[0], 1), targets], dim=1)
        o1, o2 = self.net(x1), self.net(x2)
        t1, t2 = self.view_terms(o1, targets, all_targets), self.view_terms(o2, targets, all_targets)
        zero = x1.new_zeros(())
        gap = t1.get("gap", zero) + t2.get("gap", zero)
        isam = t1.get("is", zero) + t2.get("is", zero)
        rv = t1["rv"] + t2["rv"]
        er, ecr = self.equivariance_terms(o1, o2)
        fs = self.feature_similarity(x1, o1["probs"]) if self.fs_weight else zero
        loss = ((1 - self.loss_weight) * gap + self.loss_weight * isam + self.rv_weight * rv
                + self.eq_weight * (er + ecr) + self.fs_weight * fs)
        return {"loss": loss, "gap": gap.detach(), "is": isam.detach(), "rv": rv.detach(), "er": er.detach(),
                "ecr": ecr.detach(), "fs": fs.detach()}

    # ---------------------------------------------------------------- inference
    def cam_forward(self, images):
        """The mean of the two heads, 0.5 p + 0.5 p_rv (N, C+1, h, w), not label-conditioned
        (``method.infer_heads``: p or p_rv alone instead)."""
        out = self.net(images)
        a, b = INFER_HEADS[self.infer_heads]
        return a * out["probs"] + b * out["rv_probs"]

    def view_maps(self, images, labels):
        """:meth:`cam_forward`'s maps conditioned on the views' labels (background channel first)."""
        return label_condition(self.cam_forward(images), labels.to(images.device))

    def combine(self, maps):
        """ICAM's finish of the mean over views (K, h, w), background first: arg-max
        suppression among the classes, max normalisation, background = 1 - sum."""
        fg = keep_argmax(maps[1:])
        fg = fg / (fg.amax(dim=(1, 2), keepdim=True) + 1e-5) if fg.shape[0] else fg
        return torch.cat([1.0 - fg.sum(dim=0, keepdim=True), fg])

    def infer_cams(self, inputs, size, keys, device="cpu", amp="none", channels_last=False, flip=True,
                   stride=4, hr_stride=16):
        """The default multi-scale driver with :meth:`combine` on the MEAN over views (as the reference)."""
        views = len(inputs) * (2 if flip else 1)
        view_fn = on_device(self.view_maps, device, amp, channels_last)
        return accumulate_views(view_fn, inputs, size, keys, flip, stride, hr_stride, num_classes=self.num_classes,
                                background=True, combine=lambda maps: self.combine(maps / views))
