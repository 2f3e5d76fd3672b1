"""File types by their first bytes, and safe extraction of released archives.

Drive never says what an archive is, so :func:`sniff` reads the magic bytes: zip ``PK\\x03\\x04``
(torch's zip checkpoints too: they hold ``<name>/data.pkl``), tar (``ustar`` at byte 257, also
inside gzip / bzip2 / xz), a legacy torch pickle (``\\x80`` + protocol), MXNet's NDArray list
(u64 ``0x112``), and HTML pages (never an artefact).

:func:`safe_extract` unpacks zip and tar archives member by member and refuses, before writing
anything, absolute paths, ``..`` components, drive letters, symbolic and hard links, devices and
FIFOs. It writes into a temporary folder next to the destination and renames it when complete.
"""

import bz2
import contextlib
import gzip
import lzma
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import DownloadError

MXNET_MAGIC = (0x112).to_bytes(8, "little")
CHECKPOINT_TYPES = ("torch-zip", "torch-pickle", "mxnet")
ARCHIVE_TYPES = ("zip", "tar")
_COMPRESSED = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}


def looks_like_html(head):
    """True when the first bytes are an HTML page (Drive's answers instead of a file)."""
    h = head.lstrip()[:512].lower()
    return h.startswith((b"<!doctype html", b"<html")) or b"<html" in h[:200] or b"<head" in h[:200]


def sniff(path):
    """``torch-zip``, ``zip``, ``damaged zip`` (truncated), ``tar``, ``torch-pickle``, ``mxnet``,
    ``html`` or ``None``."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile:
            return "damaged zip"
        return "torch-zip" if any(n.endswith("/data.pkl") for n in names) and \
            len({n.split("/")[0] for n in names}) == 1 else "zip"
    if head[:8] == MXNET_MAGIC:
        return "mxnet"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    for magic, opener in _COMPRESSED.items():
        if head.startswith(magic):
            with contextlib.suppress(Exception), opener(path, "rb") as f:
                inner = f.read(262)
                if inner[257:262] == b"ustar":
                    return "tar"
            return None
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch-pickle"
    if looks_like_html(head):
        return "html"
    return None


def _check_name(name, archive):
    p = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or p.is_absolute() or (p.parts and p.parts[0].endswith(":")):
        raise DownloadError(f"archive member {name!r} has an absolute path", path=archive,
                            fix="refused for safety; unpack it yourself after checking it")
    if ".." in p.parts:
        raise DownloadError(f"archive member {name!r} leaves the destination ('..')", path=archive,
                            fix="refused for safety; unpack it yourself after checking it")
    return p


def _members(archive, kind):
    """``[(relative path, opener or None for a folder)]`` of a zip or tar, checked before any write."""
    out = []
    if kind == "zip":
        z = zipfile.ZipFile(archive)
        for info in z.infolist():
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise DownloadError(f"archive member {info.filename!r} is a symbolic link", path=archive,
                                    fix="refused for safety; unpack it yourself after checking it")
            rel = _check_name(info.filename, archive)
            out.append((rel, None if info.is_dir() else (lambda i=info: z.open(i))))
        return z, out
    t = tarfile.open(archive, "r:*")
    for m in t.getmembers():
        if m.issym() or m.islnk():
            raise DownloadError(f"archive member {m.name!r} is a link", path=archive,
                                fix="refused for safety; unpack it yourself after checking it")
        if not (m.isfile() or m.isdir()):
            raise DownloadError(f"archive member {m.name!r} is not a regular file or folder", path=archive,
                                fix="refused for safety; unpack it yourself after checking it")
        rel = _check_name(m.name, archive)
        out.append((rel, None if m.isdir() else (lambda m=m: t.extractfile(m))))
    return t, out


def safe_extract(archive, dest):
    """Unpack a zip or tar ``archive`` into the new folder ``dest`` (see the module docstring);
    returns ``dest``. An unsafe member raises :class:`DownloadError` and nothing is left behind."""
    archive, dest = Path(archive), Path(dest)
    kind = sniff(archive)
    if kind not in ARCHIVE_TYPES:
        raise DownloadError(f"not a zip or tar archive (looks like: {kind or 'unknown data'})", path=archive,
                            fix="delete it and download it again, or pass the extracted folder with --from")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        handle, members = _members(archive, kind)
        with handle:
            for rel, opener in members:
                target = tmp.joinpath(*rel.parts)
                if opener is None:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with opener() as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DownloadError(f"cannot unpack the archive ({type(e).__name__}: {e})", path=archive,
                            fix="delete it and download it again (it may be truncated)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def prediction_dir(root, suffixes=(".npy", ".npz", ".png")):
    """The folder under ``root`` holding the most ``<id><suffix>`` files (archives often nest
    their predictions a few levels down); ``root`` itself when it holds none."""
    counts = {}
    for p in Path(root).rglob("*"):
        if p.suffix in suffixes and p.is_file() and not p.name.startswith("."):
            counts[p.parent] = counts.get(p.parent, 0) + 1
    return max(counts, key=lambda d: (counts[d], -len(d.parts))) if counts else Path(root)
