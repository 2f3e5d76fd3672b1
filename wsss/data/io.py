"""File IO shared by every stage: atomic writes, images, index PNGs, CAM files.

Conventions (see CONTRIBUTING.md):
- masks / pseudo masks / predictions: uint8 index PNG with the VOC palette, 0 = background,
  class c (0-based foreground index) = c + 1, 255 = ignore;
- CAM files: ``<id>.npz`` with ``keys`` (int64 foreground class indices present, 0-based),
  ``cam`` (K x h x w at stride 4) and ``hr_cam`` (K x H x W), float16 on disk. P-NOC's
  released ``<id>.npy`` pickled dicts with the same keys are read too.
"""

import contextlib
import functools
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError


def voc_palette(n=256):
    """The standard PASCAL VOC colour map as a flat list of 3*n ints."""
    return list(_voc_palette(n))


@functools.lru_cache(maxsize=None)
def _voc_palette(n):
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return tuple(pal.reshape(-1).tolist())


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text):
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj):
    """Atomically write ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _require(path, what):
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found", path=path, fix="check the data root and split list")
    return path


def load_image(path):
    """Read an image as an RGB uint8 array (H, W, 3); clear error if missing or corrupt."""
    path = _require(path, "image")
    try:
        with Image.open(path) as im:
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))  # convert() would copy
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"cannot decode image ({e})", path=path, fix="re-download or remove this file") from None


def load_mask(path):
    """Read an index mask (palette or grayscale PNG) as uint8 (H, W); palette indices are kept."""
    path = _require(path, "mask")
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16"):
                raise DataError(
                    f"mask has mode {im.mode}, expected an index PNG (palette or grayscale)",
                    path=path, fix="convert RGB colour masks to index PNGs (tools/prepare_voc.py)")
            return np.asarray(im).astype(np.uint8, copy=False)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"cannot decode mask ({e})", path=path, fix="re-create this mask") from None


def save_index_png(path, mask, palette=True):
    """Atomically write a uint8 index mask as a PNG (VOC palette unless ``palette=False``)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"index mask must be 2-D, got shape {mask.shape}")
    im = Image.fromarray(mask.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        im.putpalette(voc_palette())
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def save_gray_png(path, arr):
    """Atomically write a uint8 gray PNG (saliency maps, 0..255)."""
    save_index_png(path, np.asarray(arr, dtype=np.uint8), palette=False)


def save_cam(path, keys, cam, hr_cam):
    """Atomically write one image's CAMs (fp16) in the toolkit's ``.npz`` format."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, keys=np.asarray(keys, dtype=np.int64),
                     cam=np.asarray(cam, dtype=np.float16), hr_cam=np.asarray(hr_cam, dtype=np.float16))


def load_cam(path, fields=("cam", "hr_cam")):
    """Read a CAM file (ours ``.npz`` or P-NOC's ``.npy`` dict) -> dict of float32 arrays:
    ``keys`` and those of ``fields`` present (``fields=("hr_cam",)`` skips the stride-4 maps)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("CAM file not found", path=path, fix="run tools/infer_cam.py for this split first")
    try:
        if path.suffix == ".npy":
            data = np.load(path, allow_pickle=True).item()
        else:
            with np.load(path) as z:
                data = {k: z[k] for k in z.files if k == "keys" or k in fields}
    except Exception as e:  # corrupt or truncated archive
        raise DataError(f"cannot read CAM file ({e})", path=path, fix="delete it and re-run inference") from None
    missing = ({"keys", "hr_cam"} & ({"keys"} | set(fields))) - set(data)
    if missing:
        raise DataError(f"CAM file lacks {sorted(missing)}", path=path, fix="re-run tools/infer_cam.py")
    out = {"keys": np.asarray(data["keys"], dtype=np.int64)}
    for k in ("cam", "hr_cam"):
        if k in data and k in fields:
            out[k] = np.asarray(data[k], dtype=np.float32)
    maps = out.get("hr_cam", out.get("cam"))
    if maps is not None and len(out["keys"]) == maps.shape[0] + 1:
        # P-NOC's files prepend a background key and shift classes by one: [0, c1 + 1, ...]
        out["keys"] = out["keys"][1:] - 1
    return out


def find_cam(cam_dir, image_id):
    """Path of ``image_id``'s CAM file in ``cam_dir`` (``.npz`` preferred, else ``.npy``)."""
    cam_dir = Path(cam_dir)
    for ext in (".npz", ".npy"):
        p = cam_dir / f"{image_id}{ext}"
        if p.is_file():
            return p
    return cam_dir / f"{image_id}.npz"
