"""Downloading registry artefacts into the cache: resumable, checked, atomic (docs/hub.md).

:class:`Fetcher` gets an :class:`~wsss.hub.Artefact` from its sources in order (the P-NOC
README's current Drive ids first, the older ones as fallbacks) into ``$WSSS_CACHE``:

- a file is streamed into ``<name>.part`` with its SHA-256 computed on the way; a cut connection
  is resumed with ``Range: bytes=<n>-`` (a server that ignores the range restarts the file);
  only a complete, checked file is renamed to its final name. A transfer still short after the
  retries keeps its ``.part`` for the next run to resume;
- Drive: ``<drive>/uc?export=download&id=<id>``; the virus-scan form of large files is followed
  (:mod:`wsss.hub.drive`); the quota page, a missing / private file and any other HTML page are
  clear :class:`~wsss.errors.DownloadError` s; files inside Drive folders are found through the
  folder listing (``embeddedfolderview``);
- checks before the rename: not an HTML page, the expected type by magic bytes (checkpoint or
  archive), the pinned ``size`` / ``sha256``, the SHA-256 prefix of torchvision / ResNeSt file
  names, and the local pin of an earlier download (``<cache>/pins.json``). A failed check removes
  the file;
- archives are unpacked by :func:`wsss.hub.archive.safe_extract`; folders are downloaded file by
  file; a ``.complete`` marker ends both.

``drive_url`` (``$WSSS_DRIVE_URL``, default ``https://drive.google.com``) and ``mirror``
(``$WSSS_HUB_MIRROR``: direct URLs are fetched as ``<mirror>/<file name>``) redirect the traffic,
e.g. to a local server in the tests. ``gdown`` (the optional extra ``pip install wsss[hub]``) is
used for Drive files when it is importable and Drive is not redirected; the standard-library
path above is the fallback and what the tests exercise.
"""

import hashlib
import http.client
import json
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

from ..data.io import write_json
from ..errors import DownloadError
from . import cache_dir
from .archive import ARCHIVE_TYPES, CHECKPOINT_TYPES, looks_like_html, safe_extract, sniff
from .drive import parse_page

DRIVE_URL = "https://drive.google.com"
CHUNK = 1 << 20
USER_AGENT = "wsss-hub/1 (+https://github.com; python urllib)"
COMPLETE = ".complete"
#: kinds whose file must be a checkpoint (torch zip / pickle, MXNet)
CHECKPOINT_KINDS = ("imagenet", "cam-net", "saliency-net", "affinity-net", "segmentation-net", "superpixel-net")


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _filename(headers):
    """The file name of a ``Content-Disposition`` header (``filename*`` preferred), or ``None``."""
    value = headers.get("Content-Disposition")
    if not value:
        return None
    msg = Message()
    msg["content-disposition"] = value
    return msg.get_filename()


class Truncated(DownloadError):
    """The transfer stopped short after every retry; the ``.part`` file is kept for a resume."""


class _Page(Exception):
    """Internal: the server answered with an HTML page instead of the file."""

    def __init__(self, text, url, status):
        super().__init__(url)
        self.text, self.url, self.status = text, url, status


class Fetcher:
    """Downloads artefacts into ``cache`` (see the module docstring)."""

    def __init__(self, cache=None, drive_url=None, mirror=None, use_gdown=None, retries=4, timeout=60,
                 progress=True, log=print):
        self.cache = Path(cache or cache_dir())
        self.drive_url = (drive_url or os.environ.get("WSSS_DRIVE_URL") or DRIVE_URL).rstrip("/")
        self.mirror = (mirror or os.environ.get("WSSS_HUB_MIRROR") or "").rstrip("/") or None
        if use_gdown is None:
            use_gdown = self.drive_url == DRIVE_URL and _gdown() is not None
        self.use_gdown = bool(use_gdown)
        self.retries, self.timeout, self.progress, self.log = int(retries), float(timeout), progress, log
        self.opener = urllib.request.build_opener()
        self.opener.addheaders = [("User-Agent", USER_AGENT)]

    # ------------------------------------------------------------------ public
    def fetch(self, art, local=None, force=False):
        """The cached path of ``art`` (a file, or the folder of an archive / Drive folder),
        downloading it first (from ``local``, a file or folder, instead when given)."""
        dest = art.cache_path(self.cache)
        if not force and self.is_cached(art):
            return dest
        if art.container == "file":
            self._get_file(art, dest, local)
        elif art.container == "archive":
            if local is not None and Path(local).is_dir():
                self._copy_tree(Path(local), dest)
            else:
                archive = dest.parent / art.filename
                if force or not archive.is_file():
                    self._get_file(art, archive, local)
                self.log(f"[download] unpacking {archive.name}")
                safe_extract(archive, dest)
        else:
            if local is not None:
                if not Path(local).is_dir():
                    raise DownloadError(f"{art.name} is a folder: --from must be a folder", path=local)
                self._copy_tree(Path(local), dest)
            else:
                self._get_folder(art, dest)
        if art.container != "file":
            write_json(dest / COMPLETE, {"name": art.name})
        return dest

    def is_cached(self, art):
        dest = art.cache_path(self.cache)
        return dest.is_file() if art.container == "file" else (dest / COMPLETE).is_file()

    def list_folder(self, folder_id, prefix="", depth=0):
        """``[(relative path, file id)]`` of a Drive folder and its subfolders."""
        page = parse_page(self._get_page(f"{self.drive_url}/embeddedfolderview?id={folder_id}"))
        out = [(f"{prefix}{name}", fid) for fid, name in page.files]
        if depth < 8:
            for sub, name in page.folders:
                if sub != folder_id:
                    out += self.list_folder(sub, f"{prefix}{name}/", depth + 1)
        return out

    # ------------------------------------------------------------------ pins
    @property
    def pins_path(self):
        return self.cache / "pins.json"

    def pins(self):
        try:
            return json.loads(self.pins_path.read_text())
        except (OSError, ValueError):
            return {}

    def pin(self, name, **fields):
        pins = self.pins()
        pins[name] = {**pins.get(name, {}), **fields}
        write_json(self.pins_path, pins)

    # ------------------------------------------------------------------ one file
    def _get_file(self, art, dest, local=None):
        part = dest.with_name(dest.name + ".part")
        part.parent.mkdir(parents=True, exist_ok=True)
        if local is not None:
            local = Path(local)
            if not local.is_file():
                raise DownloadError("--from file not found", path=local, fix="pass the downloaded file")
            shutil.copyfile(local, part)
            self._finish(art, part, dest, {"source": f"local file {local}"})
            return dest
        failures = []
        for src in art.sources:
            try:
                served = self._source(src, part, art)
            except Truncated:
                raise
            except DownloadError as e:
                failures.append(f"{src.describe()}: {e}")
                continue
            self._finish(art, part, dest, {"source": src.describe(), **served}, src)
            return dest
        raise DownloadError(f"could not download {art.name} from any of its {len(art.sources)} source(s):\n    "
                            + "\n    ".join(failures),
                            fix=f"download it in a browser and pass it with tools/download.py {art.name} --from PATH")

    def _source(self, src, part, art):
        if src.url:
            url = f"{self.mirror}/{src.url.rsplit('/', 1)[-1]}" if self.mirror else src.url
            try:
                return self._http_file(url, part)
            except _Page:
                raise DownloadError(f"got an HTML page instead of the file ({url})") from None
        if src.drive:
            return self._drive_file(src.drive, part)
        listing = self.list_folder(src.folder)
        wanted = src.file or art.filename
        hits = [fid for rel, fid in listing if rel.rsplit("/", 1)[-1] == wanted]
        if not hits:
            names = ", ".join(rel for rel, _ in listing[:12]) or "nothing"
            raise DownloadError(f"no file {wanted!r} in Drive folder {src.folder} (it lists: {names})")
        return self._drive_file(hits[0], part)

    def _finish(self, art, part, dest, info, src=None):
        """Check ``part`` (module docstring), pin it, rename it to ``dest``; removes it on failure."""
        try:
            digest, size = info.get("sha256") or sha256_of(part), part.stat().st_size
            self._check(art, part, digest, size, src)
        except DownloadError:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, dest)
        known = self.pins().get(art.name) or {}
        self.pin(art.name, sha256=digest, size=size, served_name=info.get("name"), source=info["source"],
                 verified=bool(known.get("verified")) and known.get("sha256") == digest)
        if not art.sha256:
            self.log(f"[download] {art.name}: sha256 {digest}, {size} bytes (not pinned in the registry; "
                     f"kept in {self.pins_path})")

    def _check(self, art, part, digest, size, src):
        with open(part, "rb") as f:
            head = f.read(4096)
        if looks_like_html(head):
            raise DownloadError("got an HTML page instead of the file", path=part,
                                fix="the link may need a confirmation or be dead; download it in a browser "
                                    "and pass it with --from PATH")
        if art.size is not None and size != art.size:
            raise DownloadError(f"{art.name}: {size} bytes, the registry pins {art.size} (truncated or another file)",
                                path=part, fix="download it again")
        if art.sha256 and digest != art.sha256:
            raise DownloadError(f"{art.name}: sha256 {digest} does not match the pinned {art.sha256}", path=part,
                                fix="download it again; if it keeps failing the upload changed: report it")
        if src is not None and src.sha256_prefix and not digest.startswith(src.sha256_prefix):
            raise DownloadError(f"{art.name}: sha256 {digest[:16]}... does not start with {src.sha256_prefix}, "
                                "the hash in its file name", path=part, fix="download it again")
        pinned = self.pins().get(art.name, {}).get("sha256")
        if pinned and not art.sha256 and digest != pinned and self.pins()[art.name].get("verified"):
            raise DownloadError(f"{art.name}: sha256 {digest} differs from the verified earlier download {pinned}",
                                path=part, fix=f"delete {self.pins_path} entry {art.name!r} if the upload changed")
        kind = sniff(part)
        expected = ARCHIVE_TYPES if art.container == "archive" else \
            CHECKPOINT_TYPES if art.container == "file" and art.kind in CHECKPOINT_KINDS else None
        if expected and kind not in expected:
            raise DownloadError(f"{art.name}: the file is {kind or 'unknown data'}, expected "
                                f"{' / '.join(expected)}", path=part, fix="delete it and download it again")

    # ------------------------------------------------------------------ HTTP
    def _open(self, url, offset=0):
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            return self.opener.open(urllib.request.Request(url, headers=headers), timeout=self.timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:
                return None  # the range starts at/after the end: restart the file
            detail = "not found (deleted, or not shared publicly)" if e.code in (403, 404) else f"HTTP {e.code}"
            raise DownloadError(f"{detail}: {url}") from None
        except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise DownloadError(f"cannot reach {url} ({reason})",
                                fix="check the network, or download it elsewhere and pass --from PATH") from None

    def _get_page(self, url):
        resp = self._open(url)
        with resp:
            return resp.read(8 << 20).decode("utf-8", "replace")

    def _http_file(self, url, part):
        """Stream ``url`` into ``part`` with resume; ``{"name", "sha256"}``; raises :class:`_Page`."""
        received, total = 0, None
        for attempt in range(self.retries + 1):
            offset = part.stat().st_size if part.is_file() else 0
            resp = self._open(url, offset)
            if resp is None:
                part.unlink(missing_ok=True)
                continue
            with resp:
                final = resp.geturl()
                if "accounts.google.com" in final:
                    raise DownloadError(f"Drive asks for a sign-in: the file is not public ({url})")
                if "text/html" in (resp.headers.get("Content-Type") or ""):
                    raise _Page(resp.read(8 << 20).decode("utf-8", "replace"), final, resp.status)
                if offset and resp.status != 206:
                    offset = 0  # the server ignored the range: start over
                length = resp.headers.get("Content-Length")
                total = offset + int(length) if length is not None else None
                h = hashlib.sha256()
                if offset:
                    with open(part, "rb") as f:
                        for chunk in iter(lambda: f.read(CHUNK), b""):
                            h.update(chunk)
                received, cut = offset, False
                bar = _bar(self.progress, total, offset, part.name[:-5])
                try:
                    with open(part, "ab" if offset else "wb") as f:
                        while True:
                            try:
                                chunk = resp.read(CHUNK)
                            except (http.client.IncompleteRead, ConnectionError, socket.timeout, OSError):
                                cut = True
                                break
                            if not chunk:
                                break
                            f.write(chunk)
                            h.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
                finally:
                    bar.close()
                if not cut and (total is None or received >= total):
                    return {"name": _filename(resp.headers), "sha256": h.hexdigest()}
            if attempt < self.retries:
                self.log(f"[download] connection cut at {received} of {total or '?'} bytes; resuming")
        raise Truncated(f"download cut at {received} of {total or '?'} bytes after {self.retries + 1} tries; "
                            f"rerun to resume", path=part, fix="rerun the same command: it continues the .part file")

    def _drive_file(self, file_id, part):
        if self.use_gdown:
            return self._gdown_file(file_id, part)
        url = f"{self.drive_url}/uc?export=download&id={file_id}"
        for _ in range(4):
            try:
                return self._http_file(url, part)
            except _Page as page_answer:
                page = parse_page(page_answer.text)
                nxt = page.confirm_url(page_answer.url)
                if nxt:
                    url = nxt
                    continue
                if page.quota:
                    raise DownloadError(f"Drive's download quota of file {file_id} is exceeded: {page.error}",
                                        fix="try again in 24 hours, or download it in a browser and pass --from PATH"
                                        ) from None
                if page.error:
                    raise DownloadError(f"Drive refused file {file_id}: {page.error}") from None
                raise DownloadError(f"Drive answered file {file_id} with an HTML page "
                                    f"({page.title or 'untitled'}) instead of the file") from None
        raise DownloadError(f"Drive kept asking to confirm the download of file {file_id}")

    def _gdown_file(self, file_id, part):
        gdown = _gdown()
        try:
            gdown.download(id=file_id, output=str(part), quiet=not self.progress, resume=True, use_cookies=False)
        except Exception as e:  # gdown raises its own exception types, which change between majors
            raise DownloadError(f"gdown could not download Drive file {file_id}: {type(e).__name__}: {e}") from None
        if not part.is_file():
            raise DownloadError(f"gdown wrote nothing for Drive file {file_id}")
        return {"name": None}

    # ------------------------------------------------------------------ folders
    def _get_folder(self, art, dest):
        failures = []
        for src in art.sources:
            try:
                listing = self.list_folder(src.folder)
                if not listing:
                    raise DownloadError(f"Drive folder {src.folder} lists no files")
                break
            except DownloadError as e:
                failures.append(f"{src.describe()}: {e}")
        else:
            raise DownloadError(f"could not list {art.name}:\n    " + "\n    ".join(failures),
                                fix=f"download the folder in a browser and pass it with --from FOLDER")
        self.log(f"[download] {art.name}: {len(listing)} files in Drive folder {src.folder}")
        dest.mkdir(parents=True, exist_ok=True)
        for rel, fid in listing:
            target = dest / rel
            if target.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + ".part")
            try:
                self._drive_file(fid, part)
            except _Page:
                raise DownloadError(f"Drive answered {rel} of folder {src.folder} with an HTML page") from None
            with open(part, "rb") as f:
                if looks_like_html(f.read(4096)):
                    part.unlink()
                    raise DownloadError(f"got an HTML page instead of {rel}", path=target)
            os.replace(part, target)

    def _copy_tree(self, src, dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        shutil.copytree(src, tmp, dirs_exist_ok=True, symlinks=False)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)


def _gdown():
    try:
        import gdown
    except ImportError:
        return None
    return gdown


def _bar(enabled, total, initial, desc):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not enabled, dynamic_ncols=True, mininterval=1.0)
