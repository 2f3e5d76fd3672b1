"""AffinityNet: IRN's class-boundary head on a frozen backbone, its loss and its training task.

Network (IRN ``net/resnet50_irn.py`` edge branch, as used by P-NOC's ``AffinityNet``): the
backbone is frozen (no gradient, BatchNorm on running statistics: ``norm_mode: frozen``) and
its five feature levels are detached; each goes through a 1x1 conv (no bias) to 32 channels,
GroupNorm(4, 32), bilinear upsampling to stride 4 (x2 / x4 / x(os/4), then cropped), ReLU; the
concatenation (160 channels) -> 1x1 conv (bias) gives the boundary logits B at stride 4. Level 1
is the stem after its max-pool (IRN's ``stage1``), i.e. ``maxpool(c1)``.

Affinity of a pair (i, j) within the radius: ``a_ij = 1 - max_{k on the path} sigmoid(B_k)``
(:class:`wsss.affinity.pairs.PairIndex`). Loss (IRN ``step/train_irn.py``, P-NOC
``train_affinity.py``): ``(bg_pos / 2 + fg_pos / 2 + neg) / 2`` with ``bg_pos``, ``fg_pos``
the mean of ``-log(a + 1e-5)`` over background-/foreground-positive pairs and ``neg`` the mean
of ``-log(1 + 1e-5 - a)`` over negative pairs.

Inference (:meth:`AffinityNet.edge_map`): the image and its flip, zero-padded (normalised
space) on the right/bottom to ``pad_size`` as IRN's ``EdgeDisplacement`` / P-NOC's
``get_edge`` do, boundary = ``sigmoid(B / 2 + flip(B_flipped) / 2)`` cropped to the image's
stride-4 grid ``ceil(H / 4) x ceil(W / 4)``.

See docs/methods/affinitynet.md.
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import backbone_from_config
from ..engine import Option, TaskModule
from ..errors import ConfigError, DataError
from . import AFFINITY_TASKS
from .pairs import PairIndex

LEVELS = ("c1", "c2", "c3", "c4", "c5")


class EdgeHead(nn.Module):
    """IRN's boundary branch over the five backbone levels (``fc_edge1`` ... ``fc_edge6``)."""

    def __init__(self, channels, strides, width=32, groups=4):
        super().__init__()
        self.scales = []
        for i, name in enumerate(LEVELS, start=1):
            stride = strides[name] * (2 if name == "c1" else 1)  # c1 is max-pooled to stride 4 first
            if stride % 4:
                raise ConfigError(f"backbone level {name} has stride {strides[name]}; the edge head needs 2, 4, 8, ...")
            scale = stride // 4
            layers = [nn.Conv2d(channels[name], width, 1, bias=False), nn.GroupNorm(groups, width)]
            if scale > 1:
                layers.append(nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False))
            layers.append(nn.ReLU(inplace=True))
            self.add_module(f"fc_edge{i}", nn.Sequential(*layers))
            self.scales.append(scale)
        self.fc_edge6 = nn.Conv2d(width * len(LEVELS), 1, 1, bias=True)

    def forward(self, feats):
        x1 = F.max_pool2d(feats["c1"], kernel_size=3, stride=2, padding=1)
        inputs = [x1] + [feats[name] for name in LEVELS[1:]]
        outs = [getattr(self, f"fc_edge{i}")(x) for i, x in enumerate(inputs, start=1)]
        h, w = outs[1].shape[-2:]
        outs = [o[..., :h, :w] for o in outs]
        return self.fc_edge6(torch.cat(outs, dim=1))


class AffinityNet(nn.Module):
    """Frozen backbone + :class:`EdgeHead`; ``forward(x)`` -> boundary logits (B, 1, H/4, W/4)."""

    def __init__(self, backbone, width=32):
        super().__init__()
        self.backbone = backbone
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.edge = EdgeHead(backbone.channels, backbone.strides, width=width)

    def train(self, mode=True):
        super().train(mode)
        self.backbone.eval()  # IRN: the backbone stays in eval mode while the head trains
        return self

    def forward(self, x):
        with torch.no_grad():
            feats = {k: v.detach() for k, v in self.backbone(x).items() if k in LEVELS}
        return self.edge(feats)

    @torch.no_grad()
    def edge_map(self, images, sizes, pad_size=0):
        """Flip-averaged boundary maps in [0, 1], one (ceil(h/4), ceil(w/4)) tensor per image.

        ``images`` (B, 3, H, W) normalised, each image at the top-left with its (h, w) in ``sizes``;
        every image and its flip are padded to ``max(pad_size, H, W)`` (IRN: 512).
        """
        b, _, hh, ww = images.shape
        ph, pw = max(pad_size, hh), max(pad_size, ww)
        batch = images.new_zeros((2 * b, 3, ph, pw))
        for i, (h, w) in enumerate(sizes):
            batch[i, :, :h, :w] = images[i, :, :h, :w]
            batch[b + i, :, :h, :w] = images[i, :, :h, :w].flip(-1)
        logits = self(batch)[:, 0]
        out = []
        for i, (h, w) in enumerate(sizes):
            gh, gw = (h + 3) // 4, (w + 3) // 4
            out.append(torch.sigmoid(logits[i, :gh, :gw] / 2 + logits[b + i, :gh, :gw].flip(-1) / 2))
        return out


def affinity_loss(aff, bg_pos, fg_pos, neg):
    """IRN's affinity loss on pair affinities ``aff`` and float pair labels of the same shape."""
    pos_term = -torch.log(aff + 1e-5)
    neg_term = -torch.log(1.0 + 1e-5 - aff)
    bg = (bg_pos * pos_term).sum() / (bg_pos.sum() + 1e-5)
    fg = (fg_pos * pos_term).sum() / (fg_pos.sum() + 1e-5)
    ng = (neg * neg_term).sum() / (neg.sum() + 1e-5)
    return {"loss": (bg / 2 + fg / 2 + ng) / 2, "bg_pos": bg.detach(), "fg_pos": fg.detach(), "neg": ng.detach()}


def labels_at_stride4(mask):
    """Affinity labels on the stride-4 grid: nearest-neighbour downscaling by 4 (PIL's sampling
    of IRN's ``pil_rescale(label, 0.25, 0)``: pixel ``4 i + 2``)."""
    return mask[..., 2::4, 2::4]


def build_affinity_net(cfg, load_backbone=True):
    """:class:`AffinityNet` from a config's ``model`` section
    (:func:`wsss.backbones.backbone_from_config`, BatchNorm ``frozen`` by default, and
    ``edge_width``). ``load_backbone=False`` skips ``weights``/``backbone_init`` (a checkpoint
    will hold them)."""
    m = cfg.get("model") or {}
    backbone = backbone_from_config(m, pretrained=load_backbone, norm_mode="frozen")
    return AffinityNet(backbone, width=int(m.get("edge_width", 32)))


@AFFINITY_TASKS.register("irn")
class AffinityTask(TaskModule):
    """IRN's AffinityNet training: batches whose ``mask`` holds the affinity labels of
    ``method.label_dir`` (``tools/make_affinity_labels.py``, rules ``method.labels`` /
    ``labels_fallback``).

    ``build_net``, ``walk_cams`` and ``walk`` are what tools/infer_rw.py needs of a registered
    affinity task (a subclass such as psa's overrides them)."""

    name = "irn"
    build_net = staticmethod(build_affinity_net)
    options = {
        "radius": Option(10, "training pairs within this radius on the stride-4 grid"),
        "label_dir": Option(None, "affinity labels of the training split (tools/train_affinity.py --labels)"),
        "labels": Option(None, "tools/make_affinity_labels.py: the label rule with saliency ({rule: ..., ...})"),
        "labels_fallback": Option(None, "tools/make_affinity_labels.py: the label rule without saliency"),
    }
    exports = ("net",)

    def __init__(self, cfg, num_classes=None):
        super().__init__(cfg, num_classes)
        self.net = self.build_net(cfg)
        self.radius = int(self.opts["radius"])
        self._pairs = {}

    @classmethod
    def train_dataset(cls, cfg, data):
        """Images of ``data.train_split`` with the label PNGs of ``method.label_dir`` as masks,
        augmented by ``augment`` (labels padded with 255)."""
        from ..data import build_dataset
        from ..data.transforms import build_train_transform

        label_dir = cls.effective_options(cfg)["label_dir"]
        if not label_dir or not Path(label_dir).is_dir():
            raise ConfigError("affinity label folder not found", path=label_dir,
                              fix="run tools/make_affinity_labels.py first (tools/train_affinity.py --labels DIR)")
        return build_dataset(data["dataset"], data["root"], data.get("train_split", "train"),
                             transform=build_train_transform(cfg.get("augment")), mask_dir=label_dir)

    def param_groups(self):
        # IRN / P-NOC: only the boundary head trains, all of it at lr x1 with weight decay
        return {"main": [{"params": [p for p in self.net.edge.parameters() if p.requires_grad], "lr_mult": 1.0}]}

    def pair_index(self, size):
        if size not in self._pairs:
            self._pairs[size] = PairIndex(self.radius, size)
        return self._pairs[size]

    def training_step(self, batch, ctx):
        edge = self.net(batch["image"])
        labels = labels_at_stride4(batch["mask"])
        size = tuple(edge.shape[-2:])
        if tuple(labels.shape[-2:]) != size:
            raise ConfigError(f"boundary grid {size} != label grid {tuple(labels.shape[-2:])}",
                              fix="use a crop size divisible by 16 (augment.crop)")
        pairs = self.pair_index(size)
        aff = pairs.to_affinity(torch.sigmoid(edge.float()))
        return affinity_loss(aff, *pairs.pair_labels(labels))

    @staticmethod
    def walk_cams(cam, image_size, infer, stride=4, path=None):
        """The walk input of one CAM file (``load_cam``'s dict) on the stride-4 grid: its ``cam``
        (or, as P-NOC falls back, the image-size ``hr_cam`` resized to the grid), with a
        background channel in front when the file stores one (``cam_bg``) or ``infer.bg_alpha``
        is set (psa's ``(1 - max)^alpha``)."""
        from .random_walk import with_background

        h, w = image_size
        grid = ((h + stride - 1) // stride, (w + stride - 1) // stride)
        if "cam" in cam:
            cams = torch.from_numpy(cam["cam"])
        else:
            cams = F.interpolate(torch.from_numpy(cam["hr_cam"]).float()[None], size=grid, mode="bilinear",
                                 align_corners=False)[0]
        if tuple(cams.shape[1:]) != grid:
            raise DataError(f"stride-4 CAMs are {tuple(cams.shape[1:])}, expected {grid} for a {h}x{w} image",
                            path=path, fix="re-run tools/infer_cam.py on this split")
        bg = cam.get("cam_bg")
        if bg is not None and tuple(bg.shape) != grid:
            raise DataError(f"cam_bg is {tuple(bg.shape)}, expected {grid}", path=path,
                            fix="re-run tools/infer_cam.py on this split")
        return with_background(cams.float(), bg, None if bg is not None else infer.get("bg_alpha"))

    @staticmethod
    def walk(net, items, infer, device):
        """Boundary maps + batched random walk of each item's ``cams`` (:meth:`walk_cams`, any
        background channel included) -> per item (image-size scores, stride-4 walk)."""
        from .random_walk import propagate_batch, stack_images, upsample_walk

        images, sizes = stack_images([it["image"] for it in items])
        edges = net.edge_map(images.to(device), sizes, pad_size=int(infer["pad_size"]))
        rws = propagate_batch([it["cams"].to(device) for it in items], edges, beta=float(infer["beta"]),
                              logt=int(infer["logt"]), radius=int(infer["radius"]), mask_edge=bool(infer["mask_edge"]),
                              dtype=getattr(torch, infer.get("dtype", "float64")))
        return [(upsample_walk(rw, size).cpu().numpy(), rw.cpu().numpy()) for rw, size in zip(rws, sizes)]
