"""CPN, the complementary patch network (``--method cpn``; Zhang et al., ICCV 2021).

Every step sees a triplet: the crop x and its complementary pair x1 = x * S, x2 = x * (1 - S)
(S hides superpixels or grid cells; :mod:`wsss.cams.complementary`, drawn in the data workers).
The network (:class:`CPNNet`) gives for each input the fc8 CAM A (C + 1 channels, background
first) and the refined map R = PCM(Â, f) + PRCM(Â, f) * Â, where Â is the detached,
max-normalised, arg-max-only CAM (:func:`argmax_cam`) and f = [image, relu(f8_3(tap 1)),
relu(f8_4(tap 2))] with both taps detached (:class:`~wsss.cams.pcm.PCMFeatures`, shared with
ICAM): losses on R train only f8_3, f8_4, f9 and f10, never the backbone or fc8. Both maps are upsampled to the input size (bilinear, ``align_corners=True``)
and every loss is computed there. With ŷ = [1, y] and rho_0 = 1, rho_1, rho_2 = 1 - rho_1:

    L_cls  = 1/3 sum_k MLSM(GAP(A_k)[1:], y~) + 1/3 sum_k MinPool((R_k * ŷ)[1:])
    Ā_k    = rho_k * maxnorm(A_k) * ŷ,    R̄_k = rho_k * maxnorm(R_k) * ŷ
    L_tcp  = mean |sg(Ā_1 + Ā_2) - Ā_0|[1:] + mean |R̄_0 - R̄_1 - R̄_2|[1:]
    (then channel 0 of the six maps <- 1 - max over the classes)
    L_cpcr = OHEM(|M(sg(Ā_0 - Ā_1)) - R̄_2|) + OHEM(|M(sg(Ā_0 - Ā_2)) - R̄_1|)
    L      = L_cls + L_tcp + L_cpcr        (the lambda_* options weight the terms; all 1)

MinPool = the mean of relu of the lowest quarter of max_c, OHEM = the mean of the top 20 % of
all (C + 1) H W elements of each image, M keeps each pixel's channel maximum (its value) and
zeros the rest. Inference (:meth:`CPN.view_maps`, :meth:`CPN.combine`): the refined map only,
summed over scales and flips, negatives cut, each class min-max normalised, then halved.

See docs/methods/cpn.md (formulas, options, the reference's quirks and which option reproduces
each).
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import backbone_from_config
from ..engine import Option, param_groups_4
from ..errors import ConfigError
from .base import METHODS, CAMMethod
from .complementary import KEEP_MAP, RHO_KEY, STRATEGIES, ComplementaryPatches
from .losses import gap2d, mlsm
from .pcm import PCM, PCMFeatures
from .prcm import KEY_LAYOUTS, class_keys, region_attention, region_vectors

#: backbone taps of f8_3 / f8_4 by checkpoint family (psa's conv4 / conv5 on ResNet-38d)
DEFAULT_TAPS = {"resnet38d": ("b5_pre", "b6_pre")}
OTHER_TAPS = ("c3", "c4")
INFER_MAPS = ("refined", "cam")
EPS = 1e-5


# ------------------------------------------------------------------------------- network
@torch.no_grad()
def argmax_cam(cam, eps=EPS):
    """Â: the detached CAM (N, C + 1, h, w), ReLU'd and divided by each channel's maximum; the
    foreground channels keep only each pixel's maximum (others 0) and channel 0 becomes 1 - that
    maximum. All foreground channels take part (no label mask), as in the reference."""
    a = F.relu(cam.detach().float())
    a = F.relu(a - eps) / (a.amax(dim=(2, 3), keepdim=True) + eps)
    fg = a[:, 1:]
    top = fg.amax(dim=1, keepdim=True)
    return torch.cat([1.0 - top, torch.where(fg < top, torch.zeros_like(fg), fg)], dim=1)


class CPNNet(nn.Module):
    """Backbone -> Dropout2d -> ``fc8`` (C + 1 CAMs, no bias) and the PCM + PRCM refinement.

    ``forward(x) -> (cam, refined)``, both (N, C + 1, h, w) at the backbone's output stride
    (refined >= 0). Layers: ``fc8``, ``side.f8_3`` / ``side.f8_4`` (:class:`~wsss.cams.pcm.PCMFeatures`
    on two detached taps), ``pcm.f9`` (:class:`~wsss.cams.pcm.PCM`'s embedding, also PRCM's query)
    and ``f10`` (PRCM's keys): the reference's ``fc8``, ``f8_3``, ``f8_4``, ``f9``, ``f10``.
    ``taps``: default ``b5_pre``, ``b6_pre`` on ResNet-38d (psa's conv4 / conv5), else ``c3``,
    ``c4`` (resized to the CAM's grid). ``key_layout`` and ``attention_scale``: :mod:`wsss.cams.prcm`.
    """

    def __init__(self, backbone, num_classes, taps=None, tap_widths=(64, 128), embed=192, dropout=0.5,
                 key_layout="transpose", attention_scale=None):
        super().__init__()
        self.backbone = backbone
        taps = tuple(taps or DEFAULT_TAPS.get(getattr(backbone, "checkpoint_family", None), OTHER_TAPS))
        if len(taps) != 2 or len(tap_widths) != 2 or any(t not in backbone.channels for t in taps):
            raise ConfigError(f"CPN needs two backbone taps of {sorted(backbone.channels)} and two widths, "
                              f"got taps={list(taps)} widths={list(tap_widths)}",
                              fix="set method.taps (e.g. [c3, c4]) and method.tap_widths (e.g. [64, 128])")
        if key_layout not in KEY_LAYOUTS:
            raise ConfigError(f"unknown method.key_layout {key_layout!r}", fix=f"use one of {', '.join(KEY_LAYOUTS)}")
        self.taps, self.key_layout, self.attention_scale = taps, key_layout, attention_scale
        self.dropout7 = nn.Dropout2d(float(dropout))
        self.fc8 = nn.Conv2d(backbone.channels["c5"], num_classes + 1, 1, bias=False)
        nn.init.xavier_uniform_(self.fc8.weight)
        self.side = PCMFeatures([backbone.channels[t] for t in taps], [int(w) for w in tap_widths])
        self.pcm = PCM(self.side.out_channels, int(embed))
        self.f10 = nn.Conv2d(self.side.out_channels, int(embed), 1, bias=False)
        nn.init.xavier_uniform_(self.f10.weight, gain=4)

    @property
    def new_layers(self):
        """The layers trained at 10x lr: fc8, f8_3, f8_4, f9, f10."""
        return [self.fc8, self.side, self.pcm, self.f10]

    def forward(self, x):
        feats = self.backbone(x)
        cam = self.fc8(self.dropout7(feats["c5"]))
        size = tuple(cam.shape[-2:])
        a_hat = argmax_cam(cam).to(cam.dtype)
        f = self.side(x, [feats[t] for t in self.taps], size)
        keys = class_keys(F.relu(self.f10(region_vectors(f, a_hat))), self.key_layout)
        attention = region_attention(keys, F.relu(self.pcm.f9(f)), self.attention_scale)  # f9 shared with PCM
        return cam, self.pcm(a_hat, f) + attention * a_hat


# --------------------------------------------------------------------------------- losses
def max_norm(p, eps=EPS):
    """The reference's per-(image, channel) min-max normalisation of relu(p):
    relu(p - min - eps) / (max - min + eps)."""
    p = F.relu(p)
    lo, hi = p.amin(dim=(2, 3), keepdim=True), p.amax(dim=(2, 3), keepdim=True)
    return F.relu(p - lo - eps) / (hi - lo + eps)


def min_pool_loss(x):
    """Sum of relu of the lowest floor(HW / 4) values of max_c x per image, / (floor(HW / 4) N)."""
    n, _, h, w = x.shape
    k = h * w // 4
    low = torch.topk(x.amax(dim=1).reshape(n, -1), k=k, dim=1, largest=False).values
    return F.relu(low).sum() / (k * n)


def ohem_mean(x, ratio=0.2):
    """Mean of the largest floor(ratio * numel) elements of each image of x (N, ...), over the batch."""
    n = x.shape[0]
    k = int(x[0].numel() * ratio)
    return torch.topk(x.reshape(n, -1), k=k, dim=1).values.mean()


def keep_channel_max(x):
    """M(x): each pixel keeps the value(s) of its channel maximum, zeros elsewhere (not one-hot)."""
    return torch.where(x == x.amax(dim=1, keepdim=True), x, torch.zeros_like(x))


def with_background(x):
    """``x`` with channel 0 replaced by 1 - max over the other channels."""
    return torch.cat([1.0 - x[:, 1:].amax(dim=1, keepdim=True), x[:, 1:]], dim=1)


def cpn_losses(maps, labels, targets, rho, ohem_ratio=0.2):
    """CPN's loss terms from the triplet's maps (module docstring).

    ``maps``: three (cam, refined) pairs at input resolution for x, x1, x2; ``labels`` (N, C)
    multi-hot; ``targets`` the (smoothed) MLSM targets; ``rho`` (N,) the visible share of x1.
    Returns ``{"cls", "minpool", "tcp", "tcp_refined", "cpcr"}`` (``cls`` = MLSM part only)."""
    yhat = torch.cat([torch.ones_like(labels[:, :1]), labels], dim=1)[:, :, None, None].float()
    rho = rho.float().reshape(-1, 1, 1, 1)
    weights = (torch.ones_like(rho), rho, 1.0 - rho)
    cls = sum(mlsm(gap2d(a.float())[:, 1:], targets) for a, _ in maps) / 3
    minpool = sum(min_pool_loss((r.float() * yhat)[:, 1:]) for _, r in maps) / 3
    a0, a1, a2 = (w * max_norm(a.float()) * yhat for (a, _), w in zip(maps, weights))
    r0, r1, r2 = (w * max_norm(r.float()) * yhat for (_, r), w in zip(maps, weights))
    tcp = ((a1 + a2).detach() - a0)[:, 1:].abs().mean()
    tcp_refined = (r0 - r1 - r2)[:, 1:].abs().mean()
    a0, a1, a2, r1, r2 = map(with_background, (a0, a1, a2, r1, r2))
    cpcr = ohem_mean((keep_channel_max((a0 - a1).detach()) - r2).abs(), ohem_ratio) + \
        ohem_mean((keep_channel_max((a0 - a2).detach()) - r1).abs(), ohem_ratio)
    return {"cls": cls, "minpool": minpool, "tcp": tcp, "tcp_refined": tcp_refined, "cpcr": cpcr}


# --------------------------------------------------------------------------------- method
@METHODS.register("cpn")
class CPN(CAMMethod):
    """``net``: :class:`CPNNet`; the triplet losses of :func:`cpn_losses`; CPN's inference."""

    name = "cpn"
    options = {
        "strategy": Option("superpixel", f"complementary pairs: {' | '.join(STRATEGIES.names())}"),
        "n_segments": Option(300, "SLIC superpixels per crop (scikit-image n_segments)"),
        "compactness": Option(10.0, "SLIC compactness"),
        "hide_draw": Option("half", "hidden superpixels: half = exactly floor(N/2) (paper); reference = "
                                    "floor((N+1)/2) draws from {0..N} with replacement (~39 %)"),
        "slic_on": Option("image", "SLIC input: image (de-normalised crop) | normalized (the reference)"),
        "grid_sizes": Option([224, 448], "grid strategy: cell sizes, one drawn per crop"),
        "hide_prob": Option(0.5, "grid strategy: probability of hiding a cell"),
        "key_layout": Option("transpose", "PRCM class keys: transpose | reference (the .view that mixes "
                                          "classes and channels)"),
        "attention_scale": Option(None, "PRCM softmax scale; null = 1/sqrt(C+1) (the reference's 1/sqrt(21))"),
        "taps": Option(None, "backbone features behind f8_3/f8_4; null = b5_pre, b6_pre (resnet38d) or c3, c4"),
        "tap_widths": Option([64, 128], "output channels of f8_3 and f8_4"),
        "embed": Option(192, "output channels of f9 and f10"),
        "dropout": Option(0.5, "Dropout2d before fc8"),
        "ohem_ratio": Option(0.2, "share of the (C+1)HW elements kept by the cross-regularisation OHEM"),
        "lambda_minpool": Option(1.0, "weight of the min-pooling term"),
        "lambda_tcp": Option(1.0, "weight of the complementary-patch (CP) loss"),
        "lambda_cpcr": Option(1.0, "weight of the cross regularisation"),
        "infer_halve": Option(True, "divide the min-max normalised CAMs by 2 (CPN's inference)"),
        "infer_map": Option("refined", "maps saved by inference: refined (CPN: R) | cam (relu of fc8's A, "
                                       "a diagnostic of the backbone's own CAMs)"),
    }

    def __init__(self, cfg, num_classes):
        super().__init__(cfg, num_classes)
        m = self.opts
        ComplementaryPatches(**_pair_options(m))  # fail early on a bad strategy, draw or SLIC input
        model_cfg = cfg.get("model") or {}
        backbone = backbone_from_config(model_cfg)
        if model_cfg.get("frozen_prefixes"):
            from ..segmentation.deeplab import freeze_prefixes

            freeze_prefixes(backbone, tuple(model_cfg["frozen_prefixes"]))
        self.net = CPNNet(backbone, num_classes, taps=m["taps"], tap_widths=m["tap_widths"], embed=m["embed"],
                          dropout=m["dropout"], key_layout=m["key_layout"], attention_scale=m["attention_scale"])
        self.ohem_ratio = float(m["ohem_ratio"])
        self.lambdas = {k: float(m[f"lambda_{k}"]) for k in ("minpool", "tcp", "cpcr")}
        self.halve = bool(m["infer_halve"])
        if m["infer_map"] not in INFER_MAPS:
            raise ConfigError(f"unknown method.infer_map {m['infer_map']!r}", fix=f"use one of {', '.join(INFER_MAPS)}")
        self.infer_map = m["infer_map"]

    def param_groups(self):
        return {"main": param_groups_4(self.net.backbone, self.net.new_layers)}

    @classmethod
    def train_transform(cls, cfg):
        from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_train_transform

        aug = cfg.get("augment") or {}
        step = ComplementaryPatches(**_pair_options(cls.effective_options(cfg)),
                                    mean=aug.get("mean", IMAGENET_MEAN), std=aug.get("std", IMAGENET_STD))
        return build_train_transform(aug, steps={"after_crop": step})

    def triplet(self, images, keep):
        """(cam, refined) at input resolution for x, x * keep and x * (1 - keep)."""
        out = []
        for x in (images, images * keep, images * (1.0 - keep)):
            cam, refined = self.net(x)
            size = x.shape[-2:]
            out.append(tuple(F.interpolate(t, size, mode="bilinear", align_corners=True) for t in (cam, refined)))
        return out

    def training_step(self, batch, ctx):
        images, labels = batch["image"], batch["label"]
        if KEEP_MAP not in (batch.get("maps") or {}) or RHO_KEY not in batch:
            raise ConfigError("the CPN batch has no complementary pair (maps.cp_keep, cp_rho)",
                              fix="build the training set with CPN.train_dataset (its after_crop step)")
        keep = batch["maps"][KEEP_MAP].to(images.dtype)[:, None]
        terms = cpn_losses(self.triplet(images, keep), labels, self.smooth(labels), batch[RHO_KEY].to(images.device),
                           self.ohem_ratio)
        lam = self.lambdas
        loss = terms["cls"] + lam["minpool"] * terms["minpool"] + lam["tcp"] * (terms["tcp"] + terms["tcp_refined"]) \
            + lam["cpcr"] * terms["cpcr"]
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()},
                "rho": batch[RHO_KEY].float().mean()}

    # ------------------------------------------------------------------------ inference
    def cam_forward(self, images):
        """The refined foreground maps (B, C, h, w) at the backbone's stride (>= 0); with
        ``infer_map: cam`` fc8's raw foreground CAMs."""
        cam, refined = self.net(images)
        return (refined if self.infer_map == "refined" else cam)[:, 1:]

    def view_maps(self, images, labels):
        """The refined foreground maps upsampled to the view's size (``align_corners=True``), not
        ReLU'd: CPN sums the raw maps and cuts negatives afterwards (they are >= 0 anyway).
        ``infer_map: cam``: relu of fc8's CAMs instead."""
        maps = self.cam_forward(images).float()
        maps = maps if self.infer_map == "refined" else F.relu(maps)
        return F.interpolate(maps, images.shape[-2:], mode="bilinear", align_corners=True)

    def combine(self, maps):
        """Sum over views -> negatives to 0 -> per class (x - min - 1e-5)^+ / (max - min + 1e-5)
        -> / 2 (``infer_halve``). The reference leaves the pixels at the minimum slightly negative
        instead of 0; no background threshold > 0 tells the two apart."""
        s = maps.clamp(min=0)
        lo, hi = s.amin(dim=(1, 2), keepdim=True), s.amax(dim=(1, 2), keepdim=True)
        out = (s - lo - EPS).clamp(min=0) / (hi - lo + EPS)
        return out / 2 if self.halve else out


def _pair_options(m):
    """The :class:`ComplementaryPatches` options of a CPN option dict."""
    return {"strategy": m["strategy"], "n_segments": int(m["n_segments"]), "compactness": float(m["compactness"]),
            "draw": m["hide_draw"], "slic_on": m["slic_on"], "grid_sizes": tuple(int(g) for g in m["grid_sizes"]),
            "hide_prob": float(m["hide_prob"])}
