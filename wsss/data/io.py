"""File IO shared by every stage: atomic writes, images, index PNGs, CAM files.

Conventions (see CONTRIBUTING.md):
- masks / pseudo masks / predictions: uint8 index PNG with the VOC palette, 0 = background,
  class c (0-based foreground index) = c + 1, 255 = ignore;
- CAM files: ``<id>.npz`` with ``keys`` (int64 foreground class indices present, 0-based),
  ``cam`` (K x h x w at stride 4) and ``hr_cam`` (K x H x W), float16 on disk; methods whose
  maps carry a background score add ``cam_bg`` (h x w) and ``hr_cam_bg`` (H x W), which later
  stages use instead of a background threshold. P-NOC's released ``<id>.npy`` pickled dicts
  with the same keys, and psa-family ``<id>.npy`` ``{class: H x W map}`` dicts, are read too,
  through a restricted unpickler (:mod:`wsss.data.npy`) that never runs code from the file.
"""

import contextlib
import functools
import io
import json
import os
import re
import socket
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .npy import load_npy


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


#: this host's name as it appears in temporary file names
HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
#: ``.<name>.<host>-<pid>.<random>.tmp<suffix>``: a temporary file of :func:`atomic_path`
TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.tmp.*")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success. The
    temporary name carries the writer's host and process id, so that a file a killed writer left
    can be told from one being written (:func:`remove_stale_temporaries`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{HOST}-{os.getpid()}.", suffix=".tmp" + path.suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder, name=None):
    """Delete the temporary files of :func:`atomic_path` in ``folder`` (and below) whose writer, a
    process of this host, is gone: what a SIGKILL during a write leaves. Only those of output
    ``name`` when given. Files of live writers (other ranks) and other hosts are kept. Returns
    how many were removed. Tools call it once when they start, not per write."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    pattern = f".{name}.*.tmp*" if name else ".*.tmp*"
    removed = 0
    for p in (folder.glob(pattern) if name else folder.rglob(pattern)):
        m = TEMPORARY.fullmatch(p.name)
        if m and m["host"] == HOST and not _alive(int(m["pid"])):
            p.unlink(missing_ok=True)
            removed += 1
    return removed


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


def open_image(path):
    """Read an image as a decoded RGB PIL image; clear error if missing or corrupt. Datasets
    keep it so until their transform's first resize (:mod:`wsss.data.transforms`)."""
    path = _require(path, "image")
    try:
        with Image.open(path) as im:
            im.load()
            return im if im.mode == "RGB" else im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"cannot decode image ({e})", path=path, fix="re-download or remove this file") from None


def load_image(path):
    """Read an image as an RGB uint8 array (H, W, 3); clear error if missing or corrupt."""
    return np.asarray(open_image(path))


def image_hw(image):
    """(H, W) of a sample's image, array or PIL image."""
    return (image.height, image.width) if isinstance(image, Image.Image) else image.shape[:2]


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


#: the arrays a CAM file may hold besides ``keys``
CAM_FIELDS = ("cam", "hr_cam", "cam_bg", "hr_cam_bg")


def _numpy(x):
    """A tensor (any device) or array-like as a numpy array."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def save_cam(path, keys, cam, hr_cam, cam_bg=None, hr_cam_bg=None):
    """Atomically write one image's CAMs (fp16) in the toolkit's ``.npz`` format; ``cam_bg`` /
    ``hr_cam_bg`` (one map each, both or neither) store a background score. Arrays or tensors."""
    if (cam_bg is None) != (hr_cam_bg is None):
        raise ValueError("give both cam_bg and hr_cam_bg, or neither")
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    arrays = {"cam": cam, "hr_cam": hr_cam}
    if cam_bg is not None:
        arrays.update(cam_bg=cam_bg, hr_cam_bg=hr_cam_bg)
    arrays = {k: _numpy(v).astype(np.float16) for k, v in arrays.items()}
    for k in ("cam", "hr_cam"):
        if arrays[k].ndim != 3 or arrays[k].shape[0] != len(keys):
            raise ValueError(f"{k} has shape {arrays[k].shape}, expected ({len(keys)}, h, w): one map per key")
    for k in ("cam_bg", "hr_cam_bg"):
        if k in arrays and arrays[k].shape != arrays[k[:-3]].shape[1:]:
            raise ValueError(f"{k} has shape {arrays[k].shape}, expected {arrays[k[:-3]].shape[1:]}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, keys=keys, **arrays)


#: a zip member's local header: signature ... file name length, extra field length (30 bytes)
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")


def read_npz(path, names):
    """``{name: array}`` of the members ``names`` (those present) of an ``.npz`` file. The
    file is read once into a writable buffer that the arrays of stored (uncompressed, as
    ``np.savez`` writes them) members view: ``np.load`` copies each member once more, which
    costs about as much as the read. Checked as zipfile checks them (central directory, local
    header, CRC-32); object arrays are refused, as by ``np.load``."""
    with open(path, "rb") as f:
        with zipfile.ZipFile(f) as zf:
            present = set(zf.namelist())
            infos = {n: zf.getinfo(f"{n}.npy") for n in names if f"{n}.npy" in present}
            packed = {n: np.lib.format.read_array(zf.open(i)) for n, i in infos.items()
                      if i.compress_type != zipfile.ZIP_STORED}  # np.savez_compressed
        buf = bytearray(os.fstat(f.fileno()).st_size)
        f.seek(0)
        f.readinto(buf)
    return {n: packed[n] if n in packed else _stored_npy(buf, i) for n, i in infos.items()}


def _stored_npy(buf, info):
    """The array of the stored ``.npy`` member ``info`` of the zip file in ``buf``, viewed in place."""
    sig, *_, name_len, extra_len = _LOCAL_HEADER.unpack_from(buf, info.header_offset)
    start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    member = memoryview(buf)[start:start + info.file_size]
    if sig != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"Bad magic number for file header of {info.filename!r}")
    if len(member) != info.file_size or zlib.crc32(member) != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
    # the header: magic, version, its length (2 bytes in version 1, else 4), then the dict
    v1 = member[6:7] == b"\x01"
    size = (10 if v1 else 12) + int.from_bytes(member[8:10] if v1 else member[8:12], "little")
    shape, fortran, dtype = _npy_header(bytes(member[:size]))
    count = int(np.prod(shape, dtype=np.int64))
    if size + count * dtype.itemsize > len(member):
        raise ValueError(f"{info.filename}: the array data is truncated")
    arr = np.frombuffer(buf, dtype, count, start + size)
    return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


@functools.lru_cache(maxsize=256)
def _npy_header(head):
    """(shape, fortran_order, dtype) of the ``.npy`` header ``head``, as numpy parses it (and
    refuses it: over 10000 bytes, object arrays); cached: the CAM files of a data set share few."""
    f = io.BytesIO(head)
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    if dtype.hasobject:
        raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
    return shape, fortran, dtype


def load_cam(path, fields=CAM_FIELDS, dtype=np.float32):
    """Read a CAM file -> dict of ``keys`` (int64, 0-based foreground classes), ``hr_cam`` and,
    when stored, ``cam``, ``cam_bg`` and ``hr_cam_bg`` (``dtype``; None keeps the stored one,
    float16 in ``.npz``); only the arrays of ``fields`` are read (``fields=("hr_cam",)`` skips
    the stride-4 maps).

    Accepted: ours (``.npz``); P-NOC's ``.npy`` dicts (``keys`` with a background key prepended
    and classes shifted by one, ``cam`` a pickled torch tensor); psa/ICAM/CPN/AEFT ``.npy`` dicts
    ``{class index (0-based foreground): H x W map}`` (``keys`` = the sorted classes, ``hr_cam``
    their maps, no stride-4 ``cam``). ``.npy`` files are unpickled by :func:`wsss.data.npy.load_npy`,
    which refuses anything but arrays, plain containers and tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("CAM file not found", path=path, fix="run tools/infer_cam.py for this split first")
    if path.suffix == ".npy":
        data = load_npy(path)  # raises DataError itself
    else:
        try:
            data = read_npz(path, ("keys", *fields))
        except Exception as e:  # corrupt or truncated archive
            raise DataError(f"cannot read CAM file ({e})", path=path, fix="delete it and re-run inference") from None
    if not isinstance(data, dict):
        raise DataError(f"CAM file holds a {type(data).__name__}, not a dict", path=path,
                        fix="re-run tools/infer_cam.py")
    if data and all(isinstance(k, (int, np.integer)) for k in data):
        data = class_map_dict(data, path)
    missing = ({"keys", "hr_cam"} & ({"keys"} | set(fields))) - set(data)
    if missing:
        raise DataError(f"CAM file lacks {sorted(missing)}", path=path, fix="re-run tools/infer_cam.py")
    out = {"keys": np.asarray(data["keys"], dtype=np.int64)}
    for k in CAM_FIELDS:
        if k in data and k in fields:
            out[k] = np.asarray(data[k], dtype=dtype)
    if "hr_cam_bg" in out and "hr_cam" in out and out["hr_cam_bg"].shape != out["hr_cam"].shape[1:]:
        raise DataError(f"hr_cam_bg has shape {out['hr_cam_bg'].shape}, hr_cam {out['hr_cam'].shape}",
                        path=path, fix="re-run tools/infer_cam.py")
    maps = out.get("hr_cam", out.get("cam"))
    if maps is not None and len(out["keys"]) == maps.shape[0] + 1:
        # P-NOC's files prepend a background key and shift classes by one: [0, c1 + 1, ...]
        out["keys"] = out["keys"][1:] - 1
    return out


def class_map_dict(data, path=None):
    """psa-family CAMs ``{class: H x W}`` -> ``{"keys", "hr_cam"}`` (classes sorted)."""
    keys = sorted(int(k) for k in data)
    maps = [np.asarray(data[k], dtype=np.float32) for k in sorted(data, key=int)]
    if any(m.ndim != 2 or m.shape != maps[0].shape for m in maps):
        raise DataError("a {class: map} CAM dict must hold 2-D maps of one size", path=path,
                        fix="re-create the file with one H x W map per class")
    if keys[0] < 0:
        raise DataError(f"negative class index {keys[0]} in a {{class: map}} CAM dict", path=path)
    return {"keys": np.asarray(keys, dtype=np.int64), "hr_cam": np.stack(maps)}


def find_cam(cam_dir, image_id):
    """Path of ``image_id``'s CAM file in ``cam_dir`` (``.npz`` preferred, else ``.npy``)."""
    cam_dir = Path(cam_dir)
    for ext in (".npz", ".npy"):
        p = cam_dir / f"{image_id}{ext}"
        if p.is_file():
            return p
    return cam_dir / f"{image_id}.npz"
