"""psa's AffinityNet: pixel affinities from learnt features, its training task and its walk.

See docs/methods/psa.md. Network (psa ``network/resnet38_aff.py``; also ICAM's and AEFT's):
three backbone taps (ResNet-38d: ``b5_pre`` / ``b6_pre`` / ``c5`` = psa's conv4 / conv5 / conv6,
512 / 1024 / 4096 channels, all at stride 8) each go through a 1x1 conv without bias
(``f8_3`` / ``f8_4`` / ``f8_5`` -> 64 / 128 / 256) and an ELU; the concatenation goes through
``f9`` (1x1, 448 -> 448, no bias) and an ELU. Other backbones tap ``c3`` / ``c4`` / ``c5``; a
coarser tap is resized (bilinear) to the finest tap's grid, which is the walk's grid. Init as
psa: Kaiming-normal ``f8_*``, Xavier-uniform (gain 4) ``f9``. The backbone is fine-tuned
(BatchNorm frozen with ``norm_mode: frozen_affine``; psa also freezes ``conv1a`` and ``b2*``:
``model.frozen_prefixes``).

Affinity of a pair: ``a_ij = exp(-mean_c |f_i - f_j|)`` for the pairs within ``radius`` (5) of
:class:`wsss.affinity.pairs.PairIndex` on the stride-8 grid. Loss: IRN's and psa's
``bg/4 + fg/4 + neg/2`` (:func:`wsss.affinity.net.affinity_loss`) on labels sampled from the
label map at the centre of each 8x8 cell.

Walk (psa ``infer_aff.py``): the image zero-padded (after normalisation) to a multiple of 8;
the image-size CAMs with the background channel ``(1 - max)^alpha`` prepended, zero-padded the
same way and average-pooled by 8; the sparse random walk of
:mod:`wsss.affinity.random_walk` on the grid's pair affinities; bilinear x8, crop.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import backbone_from_config
from ..engine import Option, param_groups_4
from ..errors import ConfigError, DataError
from . import AFFINITY_TASKS
from .net import AffinityTask, affinity_loss
from .pairs import search_offsets
from .random_walk import random_walk_batch, stack_images, upsample_walk, with_background

# Backbone entries the three 1x1 convs read (psa's conv4 / conv5 / conv6 on ResNet-38d).
TAPS = {"resnet38d": ("b5_pre", "b6_pre", "c5")}
DEFAULT_TAPS = ("c3", "c4", "c5")
HEAD_NAMES = ("f8_3", "f8_4", "f8_5")


class PsaAffinityNet(nn.Module):
    """Backbone + psa's feature head; ``forward(x)`` -> features (B, 448, H/s, W/s).

    Parameters are ``backbone.*`` and psa's ``f8_3``, ``f8_4``, ``f8_5``, ``f9``, so psa's
    ``res38_aff.pth`` converts by the hub (``tools/download.py psa/voc/res38-aff``, converter
    ``psa-res38-aff``) and loads strictly.
    """

    def __init__(self, backbone, taps=None, widths=(64, 128, 256), out_channels=448, frozen_prefixes=()):
        super().__init__()
        self.backbone = backbone
        self.taps = tuple(taps or TAPS.get(getattr(backbone, "name", ""), DEFAULT_TAPS))
        missing = [t for t in self.taps if t not in backbone.channels]
        if len(self.taps) != 3 or len(widths) != 3 or missing:
            raise ConfigError(f"psa's head needs three backbone taps and three widths; got taps {list(self.taps)} "
                              f"(unknown: {missing}), widths {list(widths)}",
                              fix=f"choose model.psa_taps among {sorted(backbone.channels)}")
        for name, tap, width in zip(HEAD_NAMES, self.taps, widths):
            conv = nn.Conv2d(backbone.channels[tap], int(width), 1, bias=False)
            nn.init.kaiming_normal_(conv.weight)
            self.add_module(name, conv)
        self.f9 = nn.Conv2d(sum(int(w) for w in widths), int(out_channels), 1, bias=False)
        nn.init.xavier_uniform_(self.f9.weight, gain=4)
        self.stride = min(backbone.strides[t] for t in self.taps)
        from ..segmentation.deeplab import freeze_prefixes

        freeze_prefixes(backbone, tuple(frozen_prefixes))

    def head_modules(self):
        return [getattr(self, n) for n in HEAD_NAMES] + [self.f9]

    def forward(self, x):
        feats = self.backbone(x)
        maps = [F.elu(getattr(self, n)(feats[t])) for n, t in zip(HEAD_NAMES, self.taps)]
        size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])  # the finest tap's grid
        maps = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                for m in maps]
        return F.elu(self.f9(torch.cat(maps, dim=1)))

    @torch.no_grad()
    def grid_features(self, images, sizes):
        """Features of each image alone, zero-padded to a multiple of the stride (psa), as a list
        of (C, ceil(h/s), ceil(w/s)); images with the same padded size share one forward."""
        s = self.stride
        padded = [((h + s - 1) // s * s, (w + s - 1) // s * s) for h, w in sizes]
        out = [None] * len(sizes)
        for shape in dict.fromkeys(padded):
            idx = [i for i, p in enumerate(padded) if p == shape]
            batch = images.new_zeros((len(idx), images.shape[1]) + shape)
            for j, i in enumerate(idx):
                h, w = sizes[i]
                batch[j, :, :h, :w] = images[i, :, :h, :w]
            feats = self(batch)
            for j, i in enumerate(idx):
                out[i] = feats[j]
        return out


def pair_affinities(feats, pairs):
    """Training affinities (B, D, S) = exp(-mean_c |f_src - f_dst|) of ``pairs`` (a
    :class:`wsss.affinity.pairs.PairIndex` on the feature grid) from features (B, C, H, W)."""
    b, c = feats.shape[:2]
    if feats.shape[2] * feats.shape[3] != pairs.size[0] * pairs.size[1]:
        raise ValueError(f"feature grid {tuple(feats.shape[2:])} != pair grid {pairs.size}")
    flat = feats.reshape(b, c, -1)
    src = flat.index_select(2, torch.as_tensor(pairs.src, device=flat.device)).unsqueeze(2)
    dst_idx = torch.as_tensor(pairs.dst, device=flat.device)
    dst = flat.index_select(2, dst_idx.reshape(-1)).view(b, c, *dst_idx.shape)
    return torch.exp(-(dst - src).abs().mean(1))


def grid_feature_affinities(feats, radius, source_window=False):
    """Per-offset affinity maps (B, D, H, W) of every in-grid pair from features (B, C, H, W).

    ``aff[b, i, y, x]`` pairs ``(y, x)`` with ``(y, x) + offsets[i]`` (0 where that is outside
    the grid). ``source_window=True`` keeps psa's inference pairs only: sources in
    ``[0, H - r + 1) x [r - 1, W - r + 1)`` (its ``get_indices_of_pairs``), so pairs between
    two cells of the left/right/bottom border strips are absent. Returns ``(aff, offsets)``.
    """
    b, c, h, w = feats.shape
    rf = int(radius) - 1
    padded = F.pad(feats, (rf, rf, 0, rf))
    ys = torch.arange(h, device=feats.device).view(h, 1)
    xs = torch.arange(w, device=feats.device).view(1, w)
    window = (ys < h - rf) & (xs >= rf) & (xs < w - rf) if source_window else torch.ones_like(ys * xs, dtype=bool)
    offsets = search_offsets(radius)
    maps = []
    for dy, dx in offsets:
        inside = (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w) & window
        nb = padded[:, :, dy:dy + h, rf + dx:rf + dx + w]
        maps.append(torch.exp(-(nb - feats).abs().mean(1)) * inside)
    return torch.stack(maps, dim=1), offsets


def grid_cams(hr_cam, stride=8, bg_alpha=None, background=None):
    """psa's walk input: image-size CAMs (K, H, W) with a background channel in front (a stored
    image-size ``background`` (H, W), else ``(1 - max)^bg_alpha``, else none), zero-padded to a
    multiple of ``stride`` and average-pooled by it -> (K [+1], H/s, W/s)."""
    x = with_background(hr_cam.float(), background, bg_alpha)
    h, w = x.shape[1:]
    x = F.pad(x, (0, (-w) % stride, 0, (-h) % stride))
    return F.avg_pool2d(x[None], stride, stride)[0]


def labels_at_grid(mask, stride=8):
    """Affinity labels on the stride-``stride`` grid: the pixel at the centre of each cell
    (``stride * i + stride // 2``; psa average-pools its CRF score maps instead, see the docs)."""
    return mask[..., stride // 2::stride, stride // 2::stride]


def build_psa_net(cfg, load_backbone=True):
    """:class:`PsaAffinityNet` from a config's ``model`` section: ``backbone``, ``output_stride``,
    ``norm_mode`` (psa: frozen_affine), ``weights`` (ImageNet), ``backbone_kwargs``,
    ``backbone_init`` (+ ``backbone_init_prefix``: a CAM checkpoint, e.g. AEFT's psa
    ``res38_cls.pth``), ``psa_taps``, ``psa_widths``, ``psa_out``, ``frozen_prefixes``."""
    m = cfg.get("model") or {}
    backbone = backbone_from_config(m, pretrained=load_backbone, norm_mode="frozen_affine",
                                    output_stride=m.get("output_stride") or 8)
    return PsaAffinityNet(backbone, taps=m.get("psa_taps"), widths=m.get("psa_widths") or (64, 128, 256),
                          out_channels=int(m.get("psa_out", 448)), frozen_prefixes=m.get("frozen_prefixes") or ())


@AFFINITY_TASKS.register("psa")
class PsaAffinityTask(AffinityTask):
    """psa's AffinityNet training (``--method psa`` / ``method.name: psa``): IRN's task (label
    folder, pair index, options) with psa's network, parameter groups, label grid and walk."""

    name = "psa"
    options = {"radius": Option(5, "training pairs within this radius on the stride-8 grid (psa: 5)")}
    build_net = staticmethod(build_psa_net)
    loss = staticmethod(affinity_loss)  # bg/4 + fg/4 + neg/2, as psa's train_aff.py

    def param_groups(self):
        # psa: pre-trained trunk at lr x1, the new f8_*/f9 at x10, all with weight decay (no biases)
        return {"main": param_groups_4(backbone=self.net.backbone, new=self.net.head_modules())}

    def training_step(self, batch, ctx):
        feats = self.net(batch["image"])
        labels = labels_at_grid(batch["mask"], self.net.stride)
        size = tuple(feats.shape[-2:])
        if tuple(labels.shape[-2:]) != size:
            raise ConfigError(f"feature grid {size} != label grid {tuple(labels.shape[-2:])}",
                              fix=f"use a crop size divisible by {self.net.stride} (augment.crop)")
        pairs = self.pair_index(size)
        return self.loss(pair_affinities(feats.float(), pairs), *pairs.pair_labels(labels))

    @staticmethod
    def walk_cams(cam, image_size, infer, stride=8, path=None):
        """The walk input of one CAM file: its ``hr_cam`` with a background channel in front (the
        stored ``hr_cam_bg``, else ``(1 - max)^infer.bg_alpha``) pooled to the grid (:func:`grid_cams`)."""
        if "hr_cam" not in cam:
            raise DataError("psa's walk needs the image-size CAMs (hr_cam)", path=path,
                            fix="re-run tools/infer_cam.py on this split")
        hr = torch.from_numpy(cam["hr_cam"])
        if tuple(hr.shape[1:]) != tuple(image_size):
            raise DataError(f"hr_cam is {tuple(hr.shape[1:])} but the image is {tuple(image_size)}", path=path,
                            fix="re-run tools/infer_cam.py on this split")
        bg = cam.get("hr_cam_bg")
        if bg is None and "cam_bg" in cam:
            raise DataError("the CAM file stores a stride-4 background (cam_bg) but not the image-size one "
                            "(hr_cam_bg) psa's walk pools", path=path, fix="re-run tools/infer_cam.py on this split")
        return grid_cams(hr, stride, None if bg is not None else infer.get("bg_alpha"), bg)

    @staticmethod
    def walk(net, items, infer, device):
        """Features -> pair affinities -> batched sparse walk; per item (image-size scores, the walk
        at stride 4 (bilinear from the grid, as the CAM files' ``cam``)), both divided by their max."""
        images, sizes = stack_images([it["image"] for it in items])
        affs, offsets = [], None
        for f in net.grid_features(images.to(device), sizes):
            a, offsets = grid_feature_affinities(f[None].float(), int(infer["radius"]),
                                                 source_window=bool(infer.get("source_window", False)))
            affs.append(a[0])
        rws = random_walk_batch([it["cams"].to(device) for it in items], affs, offsets, beta=float(infer["beta"]),
                                logt=int(infer["logt"]), dtype=getattr(torch, infer.get("dtype", "float64")))
        return [(upsample_walk(rw, size, stride=net.stride).cpu().numpy(),
                 upsample_walk(rw, ((size[0] + 3) // 4, (size[1] + 3) // 4), stride=net.stride // 4).cpu().numpy())
                for rw, size in zip(rws, sizes)]
