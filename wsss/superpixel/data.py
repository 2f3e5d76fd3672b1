"""Per-image inputs of SP-CAM's two trainings: saliency maps and stacked CAMs (docs/methods/spcam.md).

Saliency (``<sal_dir>/<id>.png``, gray 0..255) follows the image through the augmentation in one
of two ways (``method.saliency_resize``):

- ``nearest`` (the reference: its transforms treat the saliency as a mask): the raw 0..255
  values as an index map plus a ``valid`` map, so padding (255 for index maps) can be told
  from a real 255 and is set to 0 here;
- ``bilinear``: a float map in [0, 1], padded with 0.

Either way :func:`batch_saliency` returns (B, 1, H, W) floats in [0, 1], 0 on padding (the
reference pads saliency with 0; its "255 when the map's maximum is <= 100" quirk is not
reproduced, see the docs).

:class:`CamStackMap` attaches the CAMs of a CAM experiment (``tools/infer_cam.py`` files) as one
float map (H, W, K): the present classes' ``hr_cam`` channels, zero-padded to a fixed K so that
batches stack. Which class a channel holds does not matter to its user (cell labels are only
compared within an image); an image with more than K present classes keeps the K with the
largest CAM mass.
"""

import numpy as np

from ..data.io import find_cam, load_cam
from ..data.maps import MapSource, PngMap, ValidMap, hint_from_cam
from ..errors import ConfigError

SALIENCY_RESIZES = ("nearest", "bilinear")


def saliency_sources(folder, resize="nearest"):
    """The map sources that put ``<folder>/<id>.png`` into ``maps["saliency"]`` (see module)."""
    fix = f"write a 0..255 saliency PNG per image into {folder} (runners/2-saliency.sh, or maps made elsewhere)"
    if resize == "nearest":
        return [PngMap(folder, "saliency", kind="index", what="saliency map", fix=fix), ValidMap("saliency_valid")]
    if resize == "bilinear":
        return [PngMap(folder, "saliency", kind="float", what="saliency map", fix=fix)]
    raise ConfigError(f"unknown saliency_resize {resize!r}", fix=f"use one of {', '.join(SALIENCY_RESIZES)}")


def batch_saliency(maps):
    """(B, 1, H, W) saliency in [0, 1] from a batch's ``maps`` (either kind of :func:`saliency_sources`)."""
    s = maps["saliency"]
    if not s.is_floating_point():  # raw 0..255 ids; padding (255) is where saliency_valid is 0
        s = s.float() / 255.0 * maps["saliency_valid"]
    return s[:, None].float()


class CamStackMap(MapSource):
    """``maps[name]`` (H, W, ``channels``) float32: the present classes' ``hr_cam`` of
    ``<cam_dir>/<id>.npz`` (or P-NOC ``.npy``), zero-padded (see module)."""

    def __init__(self, cam_dir, channels, name="cams", fix=None):
        self.folder, self.name, self.channels = cam_dir, name, int(channels)
        self.what = "CAM"
        self.fix = fix or "run tools/infer_cam.py on the training split of the first CAM experiment (it resumes)"
        if self.channels < 1:
            raise ConfigError(f"cam_channels must be >= 1, got {channels}")

    def path(self, image_id):
        return find_cam(self.folder, image_id)

    def read(self, path, shape):
        cam = load_cam(path)
        hint_from_cam(cam, shape, path)  # shape checks
        hr = np.asarray(cam["hr_cam"], np.float32)
        if hr.shape[0] > self.channels:
            hr = hr[np.sort(np.argsort(-hr.sum((1, 2)), kind="stable")[: self.channels])]
        out = np.zeros((*shape, self.channels), np.float32)
        out[..., : hr.shape[0]] = hr.transpose(1, 2, 0)
        return out


def check_crop(cfg, cell=16):
    """ConfigError unless ``augment.crop`` is a multiple of the superpixel cell."""
    crop = (cfg.get("augment") or {}).get("crop")
    if not crop or int(crop) % cell:
        raise ConfigError(f"augment.crop is {crop!r}: the superpixel grid needs square crops whose side is a "
                          f"multiple of {cell}", fix=f"set augment.crop to e.g. {cell * 32} (VOC) or {cell * 8}")

