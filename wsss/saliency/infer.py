"""Saliency inference: image -> map in [0, 1] -> uint8 PNG values.

- C2AM(-H) (:func:`ccam_activation`): scales + horizontal flip (inputs resized with PIL's
  antialiased bicubic, as P-NOC's ``ccam/inference.py``); per scale ``ReLU(z)`` of the
  image and of its mirror (flipped back) are summed, upsampled to the stride-16 size above the
  image and cropped; the mean over scales is divided by its max. :func:`binarize` then pads a
  background score (P-NOC: 0.2), takes the argmax and refines the two labels with a dense CRF:
  0/255 PNGs.
- PoolNet (:func:`poolnet_saliency`): one scale (images with a side <= 100 px run at 2x),
  ``sigmoid * 255``.

See docs/methods/ccam.md and docs/methods/poolnet.md.
"""

import numpy as np
import torch
import torch.nn.functional as F

from ..cams.inference import scale_image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_input(image, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 RGB (H, W, 3) -> normalised float tensor (3, H, W)."""
    x = torch.from_numpy(np.array(image, dtype=np.float32, copy=True)).div_(255.0).permute(2, 0, 1)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def _upsample_crop(m, h, w, stride=16):
    hh, ww = -(-h // stride) * stride, -(-w // stride) * stride
    return F.interpolate(m, size=(hh, ww), mode="bilinear", align_corners=False)[..., :h, :w]


@torch.no_grad()
def ccam_activations(model, images, scales=(0.5, 1.0, 1.5, 2.0), flip=True, device="cpu"):
    """Multi-scale (+ flip) C2AM foreground activations of equal-size uint8 RGB images, run as
    one batch per scale -> list of float32 (H, W) maps in [0, 1]."""
    h, w = images[0].shape[:2]
    n = len(images)
    total = torch.zeros(n, 1, h, w, device=device)
    for s in scales:
        x = torch.stack([to_input(scale_image(im, s)) for im in images])
        if flip:
            x = torch.cat([x, x.flip(-1)])
        z = F.relu(model.foreground_logits(x.to(device)).float())
        act = z[:n] + z[n:].flip(-1) if flip else z
        total += _upsample_crop(act, h, w)
    act = F.relu(total / len(scales))[:, 0]
    act = act / (act.flatten(1).max(1).values.view(n, 1, 1) + 1e-5)
    return list(act.cpu().numpy().astype(np.float32))


def ccam_activation(model, image, scales=(0.5, 1.0, 1.5, 2.0), flip=True, device="cpu"):
    """:func:`ccam_activations` of one image -> float32 (H, W) in [0, 1]."""
    return ccam_activations(model, [image], scales, flip, device)[0]


@torch.no_grad()
def poolnet_saliencies(model, images, min_side=100, device="cpu"):
    """PoolNet saliency of equal-size uint8 RGB images (one batch) -> list of float32 (H, W) in [0, 1]."""
    h, w = images[0].shape[:2]
    x = torch.stack([to_input(im) for im in images]).to(device)
    if min(h, w) <= min_side:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    z = model(x).float()
    if z.shape[-2:] != (h, w):
        z = F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)
    return list(torch.sigmoid(z)[:, 0].cpu().numpy().astype(np.float32))


def poolnet_saliency(model, image, min_side=100, device="cpu"):
    """:func:`poolnet_saliencies` of one image -> float32 (H, W) in [0, 1]."""
    return poolnet_saliencies(model, [image], min_side, device)[0]


def by_shape(images):
    """Index groups of equal-shape images, in order of first appearance (one batch each)."""
    groups = {}
    for i, im in enumerate(images):
        groups.setdefault(im.shape, []).append(i)
    return list(groups.values())


def to_uint8(prob):
    """Map in [0, 1] -> uint8 0..255 (rounded)."""
    return np.rint(np.clip(np.asarray(prob, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def binarize(image, act, threshold=0.2, crf=None):
    """Foreground where ``act > threshold`` (the argmax against a background score padded at
    ``threshold``; ties go to background), refined by a 2-label dense CRF unless ``crf`` is
    falsy (``crf``: a :mod:`wsss.postprocess.crf` preset name or dict, e.g. ``{preset: irn}`` =
    P-NOC's t 10, gt_prob 0.7, gaussian 3/3, bilateral 50/5/10). Returns uint8 0 / 255."""
    labels = (np.asarray(act) > threshold).astype(np.int64)
    if crf:
        from ..postprocess.crf import crf_from_labels

        labels = crf_from_labels(image, labels, 2, params=crf)
    return (np.asarray(labels) > 0).astype(np.uint8) * 255
