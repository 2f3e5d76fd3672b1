"""CPN's complementary patch pairs, drawn in the data workers (docs/methods/cpn.md, "Pairs").

:class:`ComplementaryPatches` is a transform step for the ``after_crop`` point of
:func:`wsss.data.transforms.build_train_transform`: it sees the final normalised crop x (H, W, 3),
draws a keep mask S (1 = visible in the first half of the pair) and adds

- ``maps["cp_keep"]``: S as float32 (H, W); the pair is x * S and x * (1 - S), so the two
  halves are complementary and together cover the image;
- ``cp_rho``: rho_1, the visible share of x * S (rho_2 = 1 - rho_1);
- ``maps["superpixels"]`` (superpixel strategy): the SLIC ids (int32, 1..N) the mask was drawn
  from. They are made here, after the crop, because no geometric op follows: ids >= 255 would
  otherwise be read as padding by the index-map resampling.

Strategies (:data:`STRATEGIES`):

- ``superpixel`` (the reference's default): SLIC superpixels (scikit-image, ``n_segments`` 300,
  ``compactness`` 10, ids from 1) of the crop, then a set of superpixels hidden. ``draw="half"``
  hides exactly floor(N / 2) distinct superpixels (the paper); ``draw="reference"`` draws
  floor((N + 1) / 2) ids from {0..N} with replacement (the reference; id 0 does not exist and
  repeats collapse, so about 39 % are hidden). rho_1 = the share of visible pixels. SLIC runs on
  the de-normalised image (``slic_on="image"``, padding = the mean colour) or, as the reference,
  on the normalised tensor (``slic_on="normalized"``).
- ``grid``: a grid size drawn from ``grid_sizes`` (224, 448), each cell hidden with probability
  ``hide_prob`` (0.5); rho_1 = the share of visible cells (the reference's count; it is the pixel
  share when the crop is a multiple of the grid size).

The masks are built by table lookups (no per-pixel Python loop); randomness comes from Python's
``random`` (reseeded per DataLoader worker).
"""

import random

import numpy as np

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ..errors import ConfigError
from ..registry import Registry

KEEP_MAP = "cp_keep"
IDS_MAP = "superpixels"
RHO_KEY = "cp_rho"
DRAWS = ("half", "reference")
SLIC_INPUTS = ("image", "normalized")

STRATEGIES = Registry("complementary-patch strategy")


def slic_superpixels(image, n_segments=300, compactness=10.0):
    """SLIC superpixel ids (int32, 1..N) of an (H, W, 3) float image (scikit-image, Lab space)."""
    from skimage.segmentation import slic

    return slic(np.ascontiguousarray(image, dtype=np.float32), n_segments=int(n_segments),
                compactness=float(compactness), start_label=1, channel_axis=-1).astype(np.int32)


def hidden_superpixels(num, draw, rng):
    """Boolean table over ids 0..num: True for the hidden superpixels (see the module docstring)."""
    hidden = np.zeros(num + 1, dtype=bool)
    if draw == "half":
        hidden[rng.choice(np.arange(1, num + 1), size=num // 2, replace=False)] = True
    elif draw == "reference":
        hidden[rng.integers(0, num + 1, size=(num + 1) // 2)] = True
    else:
        raise ValueError(f"unknown superpixel hide draw {draw!r}; use one of {DRAWS}")
    return hidden


@STRATEGIES.register("superpixel")
def superpixel_pair(image, rng, n_segments=300, compactness=10.0, draw="half", slic_on="image",
                    mean=IMAGENET_MEAN, std=IMAGENET_STD, **_):
    """``(keep (H, W) bool, rho_1, ids)`` from SLIC superpixels of the normalised crop ``image``."""
    if slic_on == "image":
        image = image * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    elif slic_on != "normalized":
        raise ValueError(f"unknown slic_on {slic_on!r}; use one of {SLIC_INPUTS}")
    ids = slic_superpixels(image, n_segments, compactness)
    keep = ~hidden_superpixels(int(ids.max()), draw, rng)[ids]
    return keep, float(keep.mean()), ids


@STRATEGIES.register("grid")
def grid_pair(image, rng, grid_sizes=(224, 448), hide_prob=0.5, **_):
    """``(keep (H, W) bool, rho_1, None)``: square cells of a size drawn from ``grid_sizes``,
    each hidden with probability ``hide_prob``; rho_1 = the share of visible cells."""
    h, w = image.shape[:2]
    g = int(grid_sizes[rng.integers(len(grid_sizes))])
    rows, cols = -(-h // g), -(-w // g)
    visible = rng.random(rows * cols) > hide_prob  # the reference hides a cell when random() <= p
    cell = (np.arange(h) // g)[:, None] * cols + (np.arange(w) // g)[None, :]
    return visible[cell], float(visible.mean()), None


class ComplementaryPatches:
    """The ``after_crop`` step adding a complementary pair's mask, rho_1 and (superpixels) ids to
    a sample (module docstring). ``options`` go to the strategy (``n_segments``, ``compactness``,
    ``draw``, ``slic_on``, ``grid_sizes``, ``hide_prob``, ``mean``, ``std``)."""

    def __init__(self, strategy="superpixel", **options):
        self.pair = STRATEGIES.get(strategy)
        self.strategy = strategy
        self.options = options
        for key, allowed, default in (("draw", DRAWS, "half"), ("slic_on", SLIC_INPUTS, "image")):
            if options.get(key, default) not in allowed:
                raise ConfigError(f"unknown complementary-patch {key} {options[key]!r}",
                                  fix=f"use one of {', '.join(allowed)} (method.{'hide_draw' if key == 'draw' else key})")

    def __call__(self, sample):
        image = sample["image"]
        if image.dtype != np.float32 or image.ndim != 3:
            raise TypeError("ComplementaryPatches runs after Normalize and the crop (float32 H x W x 3)")
        rng = np.random.default_rng(random.getrandbits(64))
        keep, rho, ids = self.pair(image, rng, **self.options)
        maps = {**(sample.get("maps") or {}), KEEP_MAP: keep.astype(np.float32)}
        if ids is not None:
            maps[IDS_MAP] = ids
        return {**sample, "maps": maps, RHO_KEY: rho}

    def __repr__(self):
        return f"ComplementaryPatches({self.strategy!r}, {self.options})"
