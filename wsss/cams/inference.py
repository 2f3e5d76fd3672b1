"""Multi-scale CAM inference, shared by every CAM method (docs/methods/cam.md, "Inference").

For each scale s the image is resized (PIL bicubic, ``round(W*s) x round(H*s)``, as P-NOC's
``inference.py``) and normalised; the image and its horizontal flip go through the network in
one batch; CAMs are ReLU'd, the flipped half is flipped back and added; the present classes are
upsampled (bilinear, ``align_corners=False``) to the stride-4 size ``ceil(H/4) x ceil(W/4)``
(``cam``) and to the image size (``hr_cam``; as the reference, to the size rounded up to a
multiple of ``hr_stride`` = 16, then cropped); maps are summed over scales and each class is
divided by its maximum + 1e-5.

Selecting the present classes before upsampling (rather than after, as the reference) gives
the same numbers, because interpolation acts on each channel separately, and saves most of the
upsampling work.

A method owns its inference through three hooks of :class:`wsss.cams.CAMMethod`, which
:func:`accumulate_views` drives: ``view_maps(x, labels)`` (one batch of views -> maps; default:
ReLU of ``cam_forward``), ``combine(maps)`` (the sum over views -> the saved maps; default:
:func:`normalise_max`) and ``background`` (maps with a leading background channel, saved as
``cam_bg`` / ``hr_cam_bg``); ``infer_cams`` replaces the whole multi-scale loop when a method
needs more (e.g. a random walk per scale).
"""

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError

DEFAULT_SCALES = (0.5, 1.0, 1.5, 2.0)


def strided_size(size, stride):
    """``(ceil(H / stride), ceil(W / stride))``."""
    return tuple((s - 1) // stride + 1 for s in size)


def scale_image(image, scale):
    """Resize a uint8 HxWx3 image by ``scale`` with PIL bicubic (identity at scale 1)."""
    h, w = image.shape[:2]
    size = (round(w * scale), round(h * scale))
    if size == (w, h):
        return image
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))


def normalize(image, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 HxWx3 -> float32 tensor (3, H, W), ``(x / 255 - mean) / std``."""
    x = (image.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def image_pyramid(image, scales=DEFAULT_SCALES, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """The normalised network inputs of ``image`` at every scale: list of (3, h_s, w_s) tensors."""
    return [normalize(scale_image(image, s), mean, std) for s in scales]


def normalise_max(x, eps=1e-5):
    """Each channel of (K, h, w) divided by its maximum + ``eps`` (the default :meth:`combine`)."""
    if x.shape[0] == 0:
        return x
    return x / (x.amax(dim=(1, 2), keepdim=True) + eps)


def _key_tensors(keys, device, background):
    """Channel indices to keep per image: the present classes, after channel 0 when the maps
    carry a background channel (class c is then channel c + 1)."""
    out = []
    for k in keys:
        k = torch.as_tensor(np.asarray(k), dtype=torch.long, device=device).reshape(-1)
        out.append(torch.cat([k.new_zeros(1), k + 1]) if background else k)
    return out


def _view_labels(keys, num_classes, flip):
    """Multi-hot (N, C) labels of the views (each image, then its flip when ``flip``)."""
    labels = torch.zeros(len(keys), num_classes)
    for b, k in enumerate(keys):
        labels[b, torch.as_tensor(np.asarray(k), dtype=torch.long).reshape(-1)] = 1.0
    return torch.cat([labels, labels]) if flip else labels


@torch.inference_mode()
def accumulate_views(view_fn, inputs, size, keys, flip=True, stride=4, hr_stride=16, num_classes=None,
                     background=False, combine=normalise_max, activation=None):
    """Per-image maps of a batch of equal-size images, summed over scales and flips.

    ``view_fn(x, labels) -> maps (N, C [+1], h, w)`` turns a batch of views (each image at one
    scale, then its flips) into maps; ``labels`` are the views' multi-hot (N, C) labels (None
    without ``num_classes``). With ``num_classes`` the channel count is checked: ``C``, or
    ``C + 1`` with channel 0 the background when ``background``. ``inputs``: list over scales of
    (B, 3, h_s, w_s) tensors (a (3, h_s, w_s) tensor means B = 1); ``size``: the original
    (H, W); ``keys``: one sequence of present class indices per image. The flipped half is
    flipped back and added; the present classes (and background) are upsampled to the stride-4
    size and the image size and summed over scales; ``combine`` finishes each (K, h, w) sum.
    ``activation`` (e.g. ReLU, for AEFT's raw maps) applies to every view after its upsampling;
    the flipped views are then upsampled on their own instead of added to their originals first.

    Returns one dict per image: ``cam`` (K, ceil(H/stride), ceil(W/stride)), ``hr_cam``
    (K, H, W), and with ``background`` also ``cam_bg`` / ``hr_cam_bg`` (one map each).
    """
    inputs = [x[None] if x.ndim == 3 else x for x in inputs]
    n = inputs[0].shape[0]
    if len(keys) != n:
        raise ValueError(f"{n} images but {len(keys)} key lists")
    h, w = size
    st_size = strided_size(size, stride)
    up_size = tuple(s * hr_stride for s in strided_size(size, hr_stride))
    labels = None if num_classes is None else _view_labels(keys, num_classes, flip)
    cams = hrs = None
    for x in inputs:
        a = view_fn(torch.cat([x, x.flip(-1)]) if flip else x, labels).float()
        if num_classes is not None and a.shape[1] != num_classes + bool(background):
            raise ConfigError(f"the CAM method returned {a.shape[1]} channels, expected {num_classes} classes"
                              + (" + a background channel" if background else ""),
                              fix="its view_maps must return C (or, with background = True, 1 + C) channels")
        views = [a[:n], a[n:].flip(-1)] if flip else [a]
        if activation is None and flip:  # upsampling is linear: add the flips first
            views = [views[0] + views[1]]
        act = activation or (lambda m: m)
        if cams is None:  # accumulators live where view_fn computes
            keys = _key_tensors(keys, a.device, background)
            cams = [a.new_zeros((len(k), *st_size)) for k in keys]
            hrs = [a.new_zeros((len(k), h, w)) for k in keys]
        for v in views:
            for b in range(n):
                if len(keys[b]) == 0:
                    continue
                ab = v[b:b + 1, keys[b]]
                cams[b] += act(F.interpolate(ab, st_size, mode="bilinear", align_corners=False))[0]
                hrs[b] += act(F.interpolate(ab, up_size, mode="bilinear", align_corners=False))[0, :, :h, :w]
    out = []
    for c, r in zip(cams, hrs):
        c, r = combine(c), combine(r)
        out.append({"cam": c[1:], "hr_cam": r[1:], "cam_bg": c[0], "hr_cam_bg": r[0]} if background
                   else {"cam": c, "hr_cam": r})
    return out


def multiscale_cams(cam_fn, inputs, size, keys, flip=True, stride=4, hr_stride=16):
    """CAMs of a batch of equal-size images (the default inference of every CAM method).

    ``cam_fn(x) -> raw CAMs (N, C, h, w)``, ReLU'd per view, then :func:`accumulate_views` and
    per-class max normalisation. Returns a list of B ``(cam, hr_cam)`` float32 pairs of shapes
    (K, ceil(H/stride), ceil(W/stride)) and (K, H, W).
    """
    out = accumulate_views(lambda x, labels: F.relu(cam_fn(x).float()), inputs, size, keys, flip, stride, hr_stride)
    return [(o["cam"], o["hr_cam"]) for o in out]


def on_device(fn, device, amp="none", channels_last=False):
    """``fn(x, *rest)`` with ``x`` on ``device``: in NHWC when ``channels_last`` (convert the
    network too: ``task.to(memory_format=torch.channels_last)``; oneDNN and cuDNN both run NHWC
    convolutions faster, e.g. ~25% less CPU time for the synthetic ResNet-18), under autocast
    (``bf16``/``fp16``) on CUDA only; tensors in ``rest`` move to ``device`` too."""
    cuda = torch.device(device).type == "cuda"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp) if cuda else None

    def call(x, *rest):
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        rest = [r.to(device) if torch.is_tensor(r) else r for r in rest]
        ctx = torch.autocast("cuda", dtype=dtype) if dtype else contextlib.nullcontext()
        with ctx:
            return fn(x, *rest)

    return call


def make_cam_fn(task, device, amp="none", channels_last=False):
    """``x -> task.cam_forward(x)`` on ``device`` (see :func:`on_device`)."""
    return on_device(task.cam_forward, device, amp, channels_last)


class PyramidDataset(torch.utils.data.Dataset):
    """Wrap a dataset (``transform=None``: uint8 images) to yield ``{"id", "size", "keys",
    "inputs"}`` for the images at ``indices``; loads and resizes in DataLoader workers."""

    def __init__(self, dataset, indices, scales=DEFAULT_SCALES, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.dataset, self.indices = dataset, list(indices)
        self.scales, self.mean, self.std = tuple(scales), mean, std

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        s = self.dataset[self.indices[i]]
        image = s["image"]
        return {"id": s["id"], "size": tuple(image.shape[:2]), "keys": np.flatnonzero(np.asarray(s["label"]) > 0.5),
                "inputs": image_pyramid(image, self.scales, self.mean, self.std)}


def group_by_size(items):
    """Split a list of :class:`PyramidDataset` items into runs of equal image size (batchable)."""
    groups = []
    for it in items:
        if groups and groups[-1][0]["size"] == it["size"]:
            groups[-1].append(it)
        else:
            groups.append([it])
    return groups


def stack_group(group):
    """Per-scale (B, 3, h_s, w_s) inputs, the common size and the keys of equal-size items."""
    inputs = [torch.stack([it["inputs"][k] for it in group]) for k in range(len(group[0]["inputs"]))]
    return inputs, group[0]["size"], [it["keys"] for it in group]


def infer_group(cam_fn, group, flip=True, stride=4, hr_stride=16):
    """Run :func:`multiscale_cams` on a list of equal-size items; yields ``(item, cam, hr_cam)``."""
    inputs, size, keys = stack_group(group)
    for it, (cam, hr) in zip(group, multiscale_cams(cam_fn, inputs, size, keys, flip, stride, hr_stride)):
        yield it, cam, hr
