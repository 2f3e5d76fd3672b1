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
"""

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

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


def _normalise_max(x, eps=1e-5):
    if x.shape[0] == 0:
        return x
    return x / (x.amax(dim=(1, 2), keepdim=True) + eps)


@torch.inference_mode()
def multiscale_cams(cam_fn, inputs, size, keys, flip=True, stride=4, hr_stride=16):
    """CAMs of a batch of equal-size images from their per-scale inputs.

    ``cam_fn(x) -> raw CAMs (N, C, h, w)``; ``inputs``: list over scales of (B, 3, h_s, w_s)
    tensors (a (3, h_s, w_s) tensor means B = 1); ``size``: the original (H, W); ``keys``: one
    sequence of present class indices per image. Returns a list of B ``(cam, hr_cam)`` float32
    pairs of shapes (K, ceil(H/stride), ceil(W/stride)) and (K, H, W).
    """
    inputs = [x[None] if x.ndim == 3 else x for x in inputs]
    n = inputs[0].shape[0]
    if len(keys) != n:
        raise ValueError(f"{n} images but {len(keys)} key lists")
    h, w = size
    st_size = strided_size(size, stride)
    up_size = tuple(s * hr_stride for s in strided_size(size, hr_stride))
    cams = hrs = None
    for x in inputs:
        batch = torch.cat([x, x.flip(-1)]) if flip else x
        a = F.relu(cam_fn(batch).float())
        if flip:
            a = a[:n] + a[n:].flip(-1)
        if cams is None:  # accumulators live where cam_fn computes
            keys = [torch.as_tensor(np.asarray(k), dtype=torch.long, device=a.device).reshape(-1) for k in keys]
            cams = [a.new_zeros((len(k), *st_size)) for k in keys]
            hrs = [a.new_zeros((len(k), h, w)) for k in keys]
        for b in range(n):
            if len(keys[b]) == 0:
                continue
            ab = a[b:b + 1, keys[b]]
            cams[b] += F.interpolate(ab, st_size, mode="bilinear", align_corners=False)[0]
            hrs[b] += F.interpolate(ab, up_size, mode="bilinear", align_corners=False)[0, :, :h, :w]
    return [(_normalise_max(c), _normalise_max(r)) for c, r in zip(cams, hrs)]


def make_cam_fn(task, device, amp="none", channels_last=False):
    """``x -> task.cam_forward(x)`` on ``device``: inputs in NHWC when ``channels_last`` (convert
    the task too: ``task.to(memory_format=torch.channels_last)``; oneDNN and cuDNN both run NHWC
    convolutions faster, e.g. ~25% less CPU time for the synthetic ResNet-18), autocast
    (``bf16``/``fp16``) on CUDA only."""
    cuda = torch.device(device).type == "cuda"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp) if cuda else None

    def cam_fn(x):
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast("cuda", dtype=dtype) if dtype else contextlib.nullcontext()
        with ctx:
            return task.cam_forward(x)

    return cam_fn


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


def infer_group(cam_fn, group, flip=True, stride=4, hr_stride=16):
    """Run :func:`multiscale_cams` on a list of equal-size items; yields ``(item, cam, hr_cam)``."""
    inputs = [torch.stack([it["inputs"][k] for it in group]) for k in range(len(group[0]["inputs"]))]
    out = multiscale_cams(cam_fn, inputs, group[0]["size"], [it["keys"] for it in group], flip, stride, hr_stride)
    for it, (cam, hr) in zip(group, out):
        yield it, cam, hr
