"""The checkpoint hub: released artefacts of the seed repositories, as data (docs/hub.md).

``registry.yaml`` (package data) lists every artefact: its sources (Drive ids, URLs, files inside
Drive folders), container, the converter that turns it into a wsss experiment, the toolkit
config that uses it and the number it is published with; ``tables.yaml`` lists the published
tables ``tools/reproduce.py`` re-measures. This module reads and checks both; downloading is
:mod:`wsss.hub.download`, archives :mod:`wsss.hub.archive`, conversion :mod:`wsss.hub.convert`,
tables :mod:`wsss.hub.reproduce`.

The cache lives in ``$WSSS_CACHE`` (default ``~/.cache/wsss``): ``<cache>/<name>/<filename>``
for files, ``<cache>/<name>/files/`` for extracted archives and folders.
"""

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError

HERE = Path(__file__).resolve().parent
REGISTRY_FILE = HERE / "registry.yaml"
TABLES_FILE = HERE / "tables.yaml"
#: the repository root (configs/ lives there)
REPO_ROOT = HERE.parents[1]

KINDS = ("imagenet", "cam-net", "saliency-net", "affinity-net", "segmentation-net", "superpixel-net", "bundle",
         "cams", "saliency", "masks", "affinity-labels")
CONTAINERS = ("file", "archive", "folder")
STATUSES = ("convertible", "files", "imagenet", "module pending", "does not reproduce")
SOURCE_KEYS = ("drive", "url", "folder")


@dataclass(frozen=True)
class Source:
    """One place to get an artefact from: a Drive file id, a URL, or a file of a Drive folder
    (``folder`` + ``file`` name; no ``file``: the whole folder)."""

    drive: str = None
    url: str = None
    folder: str = None
    file: str = None
    sha256_prefix: str = None
    origin: str = None

    def describe(self):
        if self.drive:
            return f"Drive file {self.drive}"
        if self.url:
            return self.url
        return f"Drive folder {self.folder}" + (f", file {self.file}" if self.file else "")


@dataclass(frozen=True)
class Artefact:
    """One registry entry (see ``registry.yaml`` for the fields)."""

    name: str
    seed: str
    kind: str
    sources: tuple
    container: str
    status: str
    filename: str = None
    member: str = None
    dataset: str = None
    classes: int = None
    arch: str = None
    converter: str = None
    config: str = None
    overrides: dict = field(default_factory=dict)
    size: int = None
    sha256: str = None
    published: dict = field(default_factory=dict)
    note: str = None

    @property
    def convertible(self):
        return self.converter is not None

    def cache_path(self, cache=None):
        """Where the downloaded file (or, for archives and folders, the extracted folder) lives."""
        base = Path(cache or cache_dir()) / self.name
        return base / "files" if self.container != "file" else base / self.filename

    def published_text(self):
        p = self.published or {}
        if p.get("value") is None:
            return "none published"
        return f"{p.get('metric', '')} {p['value']}" + (f" ({p['split']})" if p.get("split") else "")


def cache_dir():
    """``$WSSS_CACHE`` or ``~/.cache/wsss``."""
    return Path(os.environ.get("WSSS_CACHE") or "~/.cache/wsss").expanduser()


def _read(path):
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read the hub registry ({e})", path=path) from None
    if not isinstance(data, dict):
        raise ConfigError("the hub registry must be a mapping", path=path)
    return data


def parse_artefact(name, raw, path=REGISTRY_FILE):
    """An :class:`Artefact` from its registry mapping; a wrong field raises :class:`ConfigError`."""
    def bad(msg):
        return ConfigError(f"artefact {name!r}: {msg}", path=path, fix="see the field list at the top of the file")

    raw = dict(raw)
    known = set(Artefact.__dataclass_fields__) - {"name", "sources"}
    unknown = sorted(set(raw) - known - {"sources"})
    if unknown:
        raise bad(f"unknown field(s) {', '.join(unknown)}")
    sources = []
    for s in raw.pop("sources", None) or []:
        s = dict(s)
        s["origin"] = s.pop("from", None)
        if sum(bool(s.get(k)) for k in SOURCE_KEYS) != 1:
            raise bad(f"a source needs exactly one of {', '.join(SOURCE_KEYS)}: {s}")
        prefix = s.get("sha256_prefix")
        if prefix is not None and not (isinstance(prefix, str) and re.fullmatch(r"[0-9a-f]{6,64}", prefix)):
            raise bad(f"sha256_prefix {prefix!r} is not a quoted lowercase hex string")
        try:
            sources.append(Source(**s))
        except TypeError as e:
            raise bad(f"bad source {s}: {e}") from None
    if not sources:
        raise bad("no sources")
    for key, allowed in (("kind", KINDS), ("container", CONTAINERS), ("status", STATUSES)):
        if raw.get(key) not in allowed:
            raise bad(f"{key} {raw.get(key)!r} is not one of {', '.join(allowed)}")
    if raw["container"] == "file" and not raw.get("filename"):
        raise bad("a file needs a filename")
    if raw.get("converter") and not raw.get("config"):
        raise bad("a converter needs the toolkit config it fills")
    raw["overrides"] = dict(raw.get("overrides") or {})
    raw["published"] = dict(raw.get("published") or {})
    return Artefact(name=name, sources=tuple(sources), **raw)


@functools.lru_cache(maxsize=None)
def _registry(path):
    data = _read(path)
    return {name: parse_artefact(name, raw, path) for name, raw in (data.get("artefacts") or {}).items()}


def registry(path=None):
    """``{name: Artefact}`` of ``registry.yaml`` (or another registry file)."""
    return dict(_registry(str(path or REGISTRY_FILE)))


def get(name, path=None):
    """The artefact called ``name``; an unknown name raises :class:`ConfigError` listing similar ones."""
    entries = registry(path)
    if name not in entries:
        near = [n for n in entries if name.split("/")[-1] in n] or sorted(entries)[:8]
        raise ConfigError(f"unknown artefact {name!r}", fix=f"see tools/download.py --list; e.g. {', '.join(near[:8])}")
    return entries[name]


def tables(path=None, registry_path=None):
    """``{table name: {"title", "dataset", "rows": [...]}}`` of ``tables.yaml``, rows checked
    against the registry."""
    path = Path(path or TABLES_FILE)
    data = _read(path).get("tables") or {}
    names = registry(registry_path)
    for tname, t in data.items():
        ids = set()
        for row in t.get("rows") or []:
            missing = {"id", "label", "stage", "artefact", "split"} - set(row)
            if missing:
                raise ConfigError(f"table {tname!r}: a row lacks {', '.join(sorted(missing))}: {row}", path=path)
            if row["artefact"] not in names:
                raise ConfigError(f"table {tname!r} row {row['id']!r}: unknown artefact {row['artefact']!r}", path=path)
            if row.get("cams") and row["cams"] not in ids:
                raise ConfigError(f"table {tname!r} row {row['id']!r}: cams {row['cams']!r} is not an earlier row",
                                  path=path)
            ids.add(row["id"])
    return data


__all__ = ["Artefact", "Source", "registry", "get", "tables", "parse_artefact", "cache_dir", "REPO_ROOT"]
