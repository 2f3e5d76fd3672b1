"""The built-in synthetic WSSS benchmark: a deterministic generator of a VOC-layout dataset.

Every scene reproduces the failure modes that WSSS methods exist to fix:

- each object is a large *body* whose shape family, texture and colour are shared by the two
  classes of its group, plus a small class-specific *part* (10-15 % of the object's area, a
  saturated coloured patch) that alone tells the classes of a group apart, so a classifier's
  CAM covers mainly the part;
- each class has a preferred background (drawn with probability :data:`P_PREFERRED_BACKGROUND`),
  so CAMs leak onto the context; background and body colours overlap, only texture and
  contour separate them;
- 1-3 objects of 1-2 classes per image, object size 20-60 % of the image side, occlusion in
  drawing order (the mask follows the same order);
- crisp contours: shapes are filled polygons without anti-aliasing, so image edges and mask
  edges coincide pixel for pixel.

Sample ``index`` of a split is rendered from its own random stream seeded by
``(seed, split, index)``; it does not depend on the other samples, the split sizes or the number
of worker processes, so the output is byte-identical for the same arguments.

See docs/methods/synthetic.md.
"""

import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import ConfigError, DataError
from ..parallel import parallel_map
from .io import atomic_path, save_index_png, write_json, write_text

GENERATOR_VERSION = 1
MIN_SIZE = 32
SPLIT_CODES = {"train": 0, "val": 1}
JPEG_OPTIONS = {"quality": 95, "subsampling": 0}  # 4:4:4 keeps the small coloured parts crisp

P_PREFERRED_BACKGROUND = 0.75
P_TWO_CLASSES = 0.4
N_OBJECTS_P = {1: (0.55, 0.30, 0.15), 2: (0.0, 0.65, 0.35)}  # P(1, 2, 3 objects | number of classes)
EXTENT_RANGE = (0.20, 0.60)  # body diameter / image side
PART_FRACTION_RANGE = (0.10, 0.15)  # part area / object area
MIN_VISIBLE_BODY = 0.5  # an occluded object keeps at least this share of its area ...
MIN_VISIBLE_PART = 0.8  # ... and of its part, else the occluder is placed elsewhere
PLACEMENT_TRIES = 20
MIN_RADIUS = 4.0  # px: the smallest body is always rasterised (>= 16 px), so no image is empty
NOISE_SIGMA = 3.0


# --- designs -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Background:
    name: str
    texture: str
    colours: tuple  # two RGB colours mixed by the texture map
    period: float  # texture period as a fraction of the image side


@dataclass(frozen=True)
class BodyGroup:
    name: str
    shape: str
    texture: str
    colours: tuple
    periods: float  # texture periods across the body diameter


@dataclass(frozen=True)
class ClassDesign:
    name: str
    group: int
    part_shape: str
    part_colour: tuple
    background: int  # preferred background


# Muted background and body palettes overlap on purpose (sand ~ oval bodies, water ~ hexa
# bodies, dusk/tiles ~ box bodies, meadow ~ star bodies): colour alone does not separate them.
BACKGROUNDS = (
    Background("meadow", "mottled", ((78, 118, 58), (132, 164, 84)), 0.12),
    Background("water", "waves", ((52, 88, 138), (96, 140, 178)), 0.16),
    Background("sand", "speckle", ((178, 146, 98), (212, 186, 136)), 0.03),
    Background("brick", "bricks", ((142, 72, 56), (104, 96, 90)), 0.22),
    Background("sky", "clouds", ((150, 180, 212), (222, 226, 236)), 0.30),
    Background("tiles", "checker", ((118, 118, 124), (162, 160, 166)), 0.18),
    Background("forest", "bark", ((40, 70, 42), (86, 104, 62)), 0.09),
    Background("dusk", "mottled", ((108, 80, 120), (152, 122, 152)), 0.20),
)

GROUPS = (
    BodyGroup("oval", "ellipse", "stripes", ((168, 128, 70), (204, 164, 104)), 6.0),
    BodyGroup("hexa", "polygon", "spots", ((72, 100, 140), (112, 142, 172)), 5.0),
    BodyGroup("box", "rounded_rect", "checker", ((118, 98, 132), (152, 136, 162)), 5.0),
    BodyGroup("star", "flower", "mottled", ((92, 132, 62), (134, 166, 88)), 4.0),
)

CLASSES = (
    ClassDesign("oval_red", 0, "disc", (222, 32, 32), 2),
    ClassDesign("oval_cyan", 0, "triangle", (40, 222, 232), 1),
    ClassDesign("hexa_yellow", 1, "square", (242, 222, 30), 0),
    ClassDesign("hexa_magenta", 1, "disc", (222, 42, 204), 5),
    ClassDesign("box_orange", 2, "triangle", (252, 142, 20), 3),
    ClassDesign("box_white", 2, "disc", (248, 248, 248), 4),
    ClassDesign("star_lime", 3, "diamond", (130, 245, 40), 6),
    ClassDesign("star_black", 3, "square", (18, 18, 24), 7),
)
CLASS_NAMES = tuple(c.name for c in CLASSES)
NUM_CLASSES = len(CLASSES)


def design(p_preferred=P_PREFERRED_BACKGROUND):
    """The per-class body/part/background design as plain JSON-able data (stored in meta.json)."""
    return {
        "classes": [{"name": c.name, "group": GROUPS[c.group].name,
                     "body": {"shape": GROUPS[c.group].shape, "texture": GROUPS[c.group].texture,
                              "colours": [list(x) for x in GROUPS[c.group].colours]},
                     "part": {"shape": c.part_shape, "colour": list(c.part_colour),
                              "area_fraction": list(PART_FRACTION_RANGE)},
                     "preferred_background": BACKGROUNDS[c.background].name} for c in CLASSES],
        "backgrounds": [{"name": b.name, "texture": b.texture, "colours": [list(x) for x in b.colours]}
                        for b in BACKGROUNDS],
        "scene": {"p_preferred_background": float(p_preferred), "p_two_classes": P_TWO_CLASSES,
                  "objects_per_image": [1, 3], "extent_range": list(EXTENT_RANGE),
                  "min_visible_body": MIN_VISIBLE_BODY, "min_visible_part": MIN_VISIBLE_PART,
                  "noise_sigma": NOISE_SIGMA, "jpeg": JPEG_OPTIONS},
    }


# --- shapes: canonical polygons, max radius 1 --------------------------------------------------

def _ellipse(rng, n=48):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), rng.uniform(0.5, 0.85) * np.sin(t)], 1)


def _polygon(rng):
    n = int(rng.integers(6, 9))
    t = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(-0.25, 0.25, n) * (2 * np.pi / n)
    r = rng.uniform(0.85, 1.0, n)
    pts = np.stack([r * np.cos(t), rng.uniform(0.7, 0.95) * r * np.sin(t)], 1)
    return pts / np.abs(pts).max()


def _rounded_rect(rng, n_corner=8):
    h = rng.uniform(0.5, 0.8)
    rad = 0.3 * h
    cx, cy = 1 - rad, h - rad
    pts = []
    for (sx, sy), a0 in zip(((1, 1), (-1, 1), (-1, -1), (1, -1)), (0, 0.5, 1, 1.5)):
        a = np.pi * (a0 + np.linspace(0, 0.5, n_corner))
        pts.append(np.stack([sx * cx + rad * np.cos(a), sy * cy + rad * np.sin(a)], 1))
    pts = np.concatenate(pts)
    return pts / np.hypot(pts[:, 0], pts[:, 1]).max()


def _flower(rng, n=72):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1 + rng.uniform(0.18, 0.28) * np.cos(5 * t + rng.uniform(0, 2 * np.pi))
    pts = np.stack([r * np.cos(t), rng.uniform(0.8, 1.0) * r * np.sin(t)], 1)
    return pts / np.hypot(pts[:, 0], pts[:, 1]).max()


def _regular(k, phase=0.0):
    def make(rng):
        t = np.linspace(0, 2 * np.pi, k, endpoint=False) + phase
        return np.stack([np.cos(t), np.sin(t)], 1)
    return make


SHAPES = {
    "ellipse": _ellipse, "polygon": _polygon, "rounded_rect": _rounded_rect, "flower": _flower,
    "disc": _regular(32), "triangle": _regular(3, -np.pi / 2), "square": _regular(4, np.pi / 4),
    "diamond": _regular(4),
}


def _polygon_area(pts):
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _place(pts, scale, angle, centre):
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, s], [-s, c]])
    return pts @ rot * scale + np.asarray(centre)


def _fill(pts, size):
    """Rasterise a polygon (pixel centres at integer coordinates) without anti-aliasing."""
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


# --- textures: (u, v, period px, rng) -> float32 map in [0, 1] ---------------------------------

def _value_noise(shape, period, rng):
    h, w = shape
    gh, gw = max(2, int(np.ceil(h / period)) + 2), max(2, int(np.ceil(w / period)) + 2)
    grid = rng.random((gh, gw), dtype=np.float32)
    big = cv2.resize(grid, (int(gw * period), int(gh * period)), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[:h, :w], 0, 1)


def _stripes(u, v, p, rng):
    return (np.sin(2 * np.pi * u / p + rng.uniform(0, 2 * np.pi)) > 0).astype(np.float32)


def _waves(u, v, p, rng):
    bend = 0.35 * np.sin(2 * np.pi * u / (2.7 * p) + rng.uniform(0, 2 * np.pi))
    return (0.5 + 0.5 * np.sin(2 * np.pi * (v / p + bend) + rng.uniform(0, 2 * np.pi))).astype(np.float32)


def _checker(u, v, p, rng):
    o = rng.uniform(0, p, 2)
    return ((np.floor((u + o[0]) / p) + np.floor((v + o[1]) / p)) % 2).astype(np.float32)


def _spots(u, v, p, rng):
    o = rng.uniform(0, 1, 2)
    fu, fv = (u / p + o[0]) % 1 - 0.5, (v / p + o[1]) % 1 - 0.5
    return (np.hypot(fu, fv) < 0.3).astype(np.float32)


def _mottled(u, v, p, rng):
    return _value_noise(u.shape, p, rng)


def _speckle(u, v, p, rng):
    return np.clip(0.6 * _value_noise(u.shape, 3 * p, rng) + 0.4 * rng.random(u.shape, dtype=np.float32), 0, 1)


def _bricks(u, v, p, rng):
    row = np.floor(v / (p / 2))
    fu = ((u / p + 0.5 * (row % 2)) % 1) * p
    fv = (v % (p / 2))
    mortar = (fu < 0.12 * p) | (fv < 0.12 * p)
    return np.where(mortar, 1.0, 0.15 * _value_noise(u.shape, p / 3, rng)).astype(np.float32)


def _clouds(u, v, p, rng):
    ramp = (v - v.min()) / max(float(np.ptp(v)), 1.0)
    return np.clip(0.55 * ramp + 0.6 * _value_noise(u.shape, p, rng) - 0.15, 0, 1).astype(np.float32)


def _bark(u, v, p, rng):
    wobble = 2.5 * _value_noise(u.shape, 3 * p, rng)
    return (0.5 + 0.5 * np.sin(2 * np.pi * u / p + 2 * np.pi * wobble)).astype(np.float32)


TEXTURES = {
    "stripes": _stripes, "waves": _waves, "checker": _checker, "spots": _spots, "mottled": _mottled,
    "speckle": _speckle, "bricks": _bricks, "clouds": _clouds, "bark": _bark,
}


@functools.lru_cache(maxsize=8)
def _grid(size):
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _frame(size, angle, centre=(0.0, 0.0)):
    """Pixel coordinates (u, v) rotated by ``angle`` around ``centre``."""
    x, y = _grid(size)
    x, y = x - centre[0], y - centre[1]
    c, s = math.cos(angle), math.sin(angle)
    return c * x + s * y, -s * x + c * y


def _mix(t, colours, rng, jitter):
    """Blend two jittered RGB colours by the texture map ``t`` -> float32 (..., 3)."""
    c1, c2 = (np.asarray(c, np.float32) + rng.normal(0, jitter, 3).astype(np.float32) for c in colours)
    return c1 + t[..., None] * (c2 - c1)


# --- one sample --------------------------------------------------------------------------------

@dataclass
class Sample:
    """One rendered scene: image, class mask, instance map (-1 = background), visible part pixels."""

    image: np.ndarray  # uint8 (S, S, 3), before JPEG
    mask: np.ndarray  # uint8 (S, S): 0 background, class c -> c + 1
    instances: np.ndarray  # int16 (S, S): index into ``objects`` of the visible object, -1 background
    parts: np.ndarray  # bool (S, S): visible class-specific part pixels
    background: int
    objects: list = field(default_factory=list)  # dicts, in drawing order (back to front)

    @property
    def classes(self):
        """Sorted 0-based foreground classes present in the image."""
        return sorted({o["class"] for o in self.objects})


def _rng(seed, index, split):
    if split not in SPLIT_CODES:
        raise ConfigError(f"unknown split {split!r}", fix=f"use one of {sorted(SPLIT_CODES)}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLIT_CODES[split], int(index)]))


def _choose_scene(rng, p_preferred=P_PREFERRED_BACKGROUND):
    n_cls = 2 if rng.random() < P_TWO_CLASSES else 1
    classes = [int(c) for c in rng.choice(NUM_CLASSES, n_cls, replace=False)]
    n_obj = int(rng.choice([1, 2, 3], p=N_OBJECTS_P[n_cls]))
    objs = classes + [int(c) for c in rng.choice(classes, n_obj - n_cls)]
    objs = [objs[i] for i in rng.permutation(n_obj)]
    preferred = sorted({CLASSES[c].background for c in classes})
    if rng.random() < p_preferred:
        bg = int(rng.choice(preferred))
    else:
        bg = int(rng.choice([b for b in range(len(BACKGROUNDS)) if b not in preferred]))
    return objs, bg


def _render_background(bg, size, rng):
    b = BACKGROUNDS[bg]
    u, v = _frame(size, rng.uniform(0, 2 * np.pi))
    t = TEXTURES[b.texture](u, v, max(3.0, b.period * size), rng)
    return _mix(t, b.colours, rng, jitter=8.0)


def _body_geometry(cls, size, rng):
    """Canonical body polygon of the class's group and its radius in pixels."""
    pts = SHAPES[GROUPS[CLASSES[cls].group].shape](rng)
    return pts, max(MIN_RADIUS, 0.5 * size * rng.uniform(*EXTENT_RANGE))


def _part_mask(cls, body, angle, size, rng):
    """Part of the class inside ``body``: placed towards a random end of the body's long axis."""
    frac = rng.uniform(*PART_FRACTION_RANGE)
    pts = SHAPES[CLASSES[cls].part_shape](rng)
    radius = math.sqrt(frac * body.sum() / _polygon_area(pts))  # pts have max radius 1
    dist = cv2.distanceTransform(body.astype(np.uint8), cv2.DIST_L2, 5)
    head = angle + np.pi * int(rng.integers(0, 2))
    spin = rng.uniform(0, 2 * np.pi)
    if dist.max() < radius + 1:  # too thin for the full part: the largest that fits
        radius = max(1.5, float(dist.max()) - 1)
    ys, xs = np.nonzero(dist >= radius + 1)
    if xs.size == 0:
        ys, xs = np.nonzero(dist == dist.max())
    k = int(np.argmax(xs * math.cos(head) + ys * math.sin(head)))
    part = _fill(_place(pts, radius, spin, (xs[k], ys[k])), size) & body
    # rasterising adds about half a pixel all round: rescale once to hit the target area
    radius *= math.sqrt(frac * body.sum() / max(1, part.sum()))
    return _fill(_place(pts, radius, spin, (xs[k], ys[k])), size) & body


def _try_place(cls, pts, scale, owner, is_part, areas, size, rng):
    """Rasterised body + part, or ``None`` when it would hide too much of an earlier object."""
    angle = rng.uniform(0, 2 * np.pi)
    poly = _place(pts, scale, angle, (0.0, 0.0))
    lo, hi = -poly.min(0), size - 1 - poly.max(0)
    centre = rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi))
    body = _fill(poly + centre, size)
    if body.sum() < 16:
        return None
    for j, (area, part_area) in enumerate(areas):
        mine = owner == j
        hidden_too_much = ((mine & ~body).sum() < MIN_VISIBLE_BODY * area
                           or (mine & is_part & ~body).sum() < MIN_VISIBLE_PART * part_area)
        if hidden_too_much:
            return None
    part = _part_mask(cls, body, angle, size, rng)
    extent = float(max(np.ptp(poly[:, 0]), np.ptp(poly[:, 1]))) / size
    return body, part, angle, centre, extent


def _paint_body(image, cls, body, part, angle, centre, scale, rng):
    group = GROUPS[CLASSES[cls].group]
    u, v = _frame(image.shape[0], angle, centre)
    t = TEXTURES[group.texture](u, v, max(3.0, 2 * scale / group.periods), rng)
    colour = _mix(t[body], group.colours, rng, jitter=10.0) * rng.uniform(0.85, 1.15)
    shade_dir = rng.uniform(0, 2 * np.pi)
    shade = 1 + 0.12 * (u[body] * math.cos(shade_dir) + v[body] * math.sin(shade_dir)) / scale
    part_colour = np.asarray(CLASSES[cls].part_colour, np.float32) + rng.normal(0, 6, 3).astype(np.float32)
    image[body] = colour * shade[:, None]
    image[part] = part_colour


def render_sample(seed, index, size=128, split="train", p_preferred=P_PREFERRED_BACKGROUND):
    """Render sample ``index`` of ``split`` for ``seed`` deterministically -> :class:`Sample`.

    ``p_preferred``: probability that the background is one preferred by a class of the image
    (the context prior). Another value gives other samples (the random stream moves on
    differently), with the same distribution of everything else.
    """
    if size < MIN_SIZE:
        raise ConfigError(f"image size {size} is below {MIN_SIZE} px", fix=f"use --size {MIN_SIZE} or more")
    rng = _rng(seed, index, split)
    obj_classes, bg = _choose_scene(rng, p_preferred)
    image = _render_background(bg, size, rng)
    owner = np.full((size, size), -1, np.int16)
    is_part = np.zeros((size, size), bool)
    areas, objects = [], []
    for cls in obj_classes:
        pts, scale = _body_geometry(cls, size, rng)
        placed = None
        for _ in range(PLACEMENT_TRIES):
            placed = _try_place(cls, pts, scale, owner, is_part, areas, size, rng)
            if placed is not None:
                break
            scale = max(MIN_RADIUS, 0.9 * scale)
        if placed is None:
            continue
        body, part, angle, centre, extent = placed
        _paint_body(image, cls, body, part, angle, centre, scale, rng)
        k = len(objects)
        owner[body] = k
        is_part[body] = part[body]
        areas.append((int(body.sum()), int(part.sum())))
        objects.append({"class": cls, "extent": extent, "centre": [float(centre[0]), float(centre[1])],
                        "angle": float(angle), "area": areas[-1][0], "part_area": areas[-1][1],
                        "part_fraction": areas[-1][1] / areas[-1][0]})
    for k, o in enumerate(objects):
        o["visible_area"] = int((owner == k).sum())
        o["visible_part_area"] = int(((owner == k) & is_part).sum())
    image = image * rng.uniform(0.9, 1.1) + rng.normal(0, NOISE_SIGMA, image.shape)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    cls_of = np.array([o["class"] + 1 for o in objects] + [0], np.uint8)
    mask = cls_of[owner]  # owner -1 picks the trailing 0 (background)
    return Sample(image, mask, owner, is_part & (owner >= 0), bg, objects)


# --- the dataset on disk ---------------------------------------------------------------------

def sample_id(split, index):
    """File stem of sample ``index`` of ``split``, e.g. ``train_000042``."""
    return f"{split}_{index:06d}"


def save_jpeg(path, image):
    """Atomically write an RGB uint8 image as a quality-95 4:4:4 JPEG."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="JPEG", **JPEG_OPTIONS)


def _write_one(_state, task):
    root, seed, size, split, index, p_preferred = task
    s = render_sample(seed, index, size, split, p_preferred)
    sid = sample_id(split, index)
    save_jpeg(Path(root) / "JPEGImages" / f"{sid}.jpg", s.image)
    save_index_png(Path(root) / "SegmentationClass" / f"{sid}.png", s.mask)
    return split, s.classes, s.background, [o["part_fraction"] for o in s.objects], float((s.mask > 0).mean())


def _config(seed, n_train, n_val, size, p_preferred=P_PREFERRED_BACKGROUND):
    config = {"generator": "wsss.data.synthetic", "version": GENERATOR_VERSION, "seed": int(seed),
              "size": int(size), "n_train": int(n_train), "n_val": int(n_val)}
    if p_preferred != P_PREFERRED_BACKGROUND:  # recorded only when changed: default datasets keep their meta
        config["p_preferred_background"] = float(p_preferred)
    return config


def scene_options(config):
    """``render_sample`` keyword arguments of a dataset from its ``meta.json`` ``config``."""
    return {"p_preferred": float(config.get("p_preferred_background", P_PREFERRED_BACKGROUND))}


def _check_args(seed, n_train, n_val, size, workers, p_preferred=P_PREFERRED_BACKGROUND):
    checks = [(0.0 <= p_preferred <= 1.0, f"p_preferred must be in [0, 1], got {p_preferred!r}",
               "--p-preferred 0.75"),
              (isinstance(seed, (int, np.integer)) and seed >= 0, f"seed must be an integer >= 0, got {seed!r}",
               "--seed 0"),
              (n_train >= 1, f"need at least 1 training image, got {n_train}", "--train 1 or more"),
              (n_val >= 1, f"need at least 1 validation image, got {n_val}", "--val 1 or more"),
              (size >= MIN_SIZE, f"image size {size} is below {MIN_SIZE} px", f"--size {MIN_SIZE} or more"),
              (workers >= 1, f"workers must be >= 1, got {workers}", "--workers 1 or more")]
    for ok, msg, fix in checks:
        if not ok:
            raise ConfigError(msg, fix=f"pass {fix}")


def _stats(results):
    split_stats = {}
    for split in SPLIT_CODES:
        rows = [r for r in results if r[0] == split]
        images = [0] * NUM_CLASSES
        for r in rows:
            for c in r[1]:
                images[c] += 1
        pref = sum(r[2] in {CLASSES[c].background for c in r[1]} for r in rows)
        fracs = [f for r in rows for f in r[3]]
        split_stats[split] = {
            "images": len(rows), "images_per_class": dict(zip(CLASS_NAMES, images)),
            "objects": len(fracs), "two_class_images": sum(len(r[1]) == 2 for r in rows),
            "preferred_background_rate": round(pref / max(1, len(rows)), 4),
            "mean_part_fraction": round(float(np.mean(fracs)), 4) if fracs else 0.0,
            "mean_foreground_fraction": round(float(np.mean([r[4] for r in rows])), 4) if rows else 0.0,
        }
    return split_stats


def generate(out_dir, seed=0, n_train=2000, n_val=300, size=128, workers=1, overwrite=False, progress=True,
             p_preferred=P_PREFERRED_BACKGROUND):
    """Write the synthetic dataset in VOC layout under ``out_dir``; return a summary dict.

    ``p_preferred`` sets the context prior (:func:`render_sample`); 1/8 draws the background
    nearly uniformly (exactly for one-class images).

    Skips (``skipped=True``) when ``out_dir/meta.json`` already records the same arguments;
    a different dataset there needs ``overwrite=True``. ``meta.json`` is written last, so an
    interrupted run leaves no meta and is redone from scratch.
    """
    _check_args(seed, n_train, n_val, size, workers, p_preferred)
    out = Path(out_dir)
    config = _config(seed, n_train, n_val, size, p_preferred)
    meta_path = out / "meta.json"
    if meta_path.is_file() and not overwrite:
        try:
            old = json.loads(meta_path.read_text()).get("config")
        except (json.JSONDecodeError, AttributeError):
            old = None
        if old == config:
            return {"out_dir": str(out), "skipped": True, "written": 0, **config}
        old = old or {}
        diff = ", ".join(f"{k} {old.get(k)!r} (asked: {config.get(k)!r})" for k in sorted(old.keys() | config.keys())
                         if old.get(k) != config.get(k))
        raise DataError(f"holds a dataset made with other settings: {diff}", path=meta_path,
                        fix="pass --overwrite to regenerate it, or choose another --out")
    if meta_path.is_file():
        meta_path.unlink()  # the dataset is incomplete until the new meta is written
    tasks = [(str(out), int(seed), int(size), split, i, float(p_preferred))
             for split, n in (("train", n_train), ("val", n_val)) for i in range(n)]
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(tasks), desc="synthetic", unit="img", disable=not progress)
    results = []
    for r in parallel_map(_write_one, tasks, workers=workers):
        results.append(r)
        bar.update()
    bar.close()
    for split, n in (("train", n_train), ("val", n_val)):
        write_text(out / "ImageSets" / "Segmentation" / f"{split}.txt",
                   "".join(f"{sample_id(split, i)}\n" for i in range(n)))
    write_text(out / "class_names.txt", "".join(f"{n}\n" for n in CLASS_NAMES))
    meta = {"config": config, "class_names": list(CLASS_NAMES), "design": design(p_preferred),
            "stats": _stats(results)}
    write_json(meta_path, meta)
    return {"out_dir": str(out), "skipped": False, "written": len(tasks), **config}


def default_workers():
    """min(2, CPU count): the generator is fast; more processes mostly add start-up cost."""
    return max(1, min(2, os.cpu_count() or 1))
