"""What Google Drive's HTML pages mean (docs/hub.md, "How Drive serves files").

A Drive download URL answers either with the file (``Content-Disposition`` and no ``text/html``)
or with a page, read here with the standard library's HTML parser:

- the virus-scan warning of large files: ``<form id="download-form" action=...>`` whose hidden
  inputs (``id``, ``export``, ``confirm``, ``uuid``, sometimes ``at``) become the query of the
  file URL (older pages: a ``href="/uc?export=download..."`` link or a ``"downloadUrl"`` value);
- an error: ``<p class="uc-error-subcaption">``, e.g. the quota message "Too many users have
  viewed or downloaded this file recently" (often with status 200);
- a folder listing (``embeddedfolderview?id=<folder>``): one ``<a href=".../file/d/<id>/view">``
  per file, with its name in a ``flip-entry-title`` element, and ``.../drive/folders/<id>`` per
  subfolder.
"""

import html
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin

DRIVE_ID = re.compile(r"[-\w]{25,}")
_FILE_LINK = re.compile(r"/file/d/([-\w]{25,})")
_FOLDER_LINK = re.compile(r"/folders/([-\w]{25,})")
_DOWNLOAD_URL = re.compile(r'"downloadUrl":"([^"]+)"')
QUOTA_WORDS = ("too many users", "quota")


def drive_id(text):
    """The Drive id in a share URL (``/file/d/<id>/``, ``/folders/<id>``, ``?id=<id>``) or a bare id."""
    for pattern in (_FILE_LINK, _FOLDER_LINK, re.compile(r"[?&]id=([-\w]{25,})")):
        m = pattern.search(text)
        if m:
            return m.group(1)
    text = text.strip()
    return text if DRIVE_ID.fullmatch(text) else None


@dataclass
class Page:
    """What a Drive HTML page says."""

    title: str = ""
    form_action: str = None
    form_inputs: dict = field(default_factory=dict)
    link: str = None
    error: str = None
    files: list = field(default_factory=list)    # [(id, name)] of a folder listing
    folders: list = field(default_factory=list)  # [(id, name)]

    def confirm_url(self, base):
        """The URL that returns the file (the virus-scan form, or an older page's link)."""
        if self.form_action:
            return urljoin(base, self.form_action) + "?" + urlencode(self.form_inputs)
        if self.link:
            return urljoin(base, self.link)
        return None

    @property
    def quota(self):
        return bool(self.error) and any(w in self.error.lower() for w in QUOTA_WORDS)


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._in = None          # "title" | "error" | "form"
        self._text = []
        self._anchor = None      # (kind, id, [text], title text or None)
        self._title_div = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = a.get("class") or ""
        if tag == "title":
            self._in, self._text = "title", []
        elif tag == "form" and a.get("id") == "download-form":
            self.page.form_action = a.get("action")
            self._in = "form"
        elif tag == "input" and self._in == "form" and a.get("type", "hidden") == "hidden" and a.get("name"):
            self.page.form_inputs[a["name"]] = a.get("value") or ""
        elif tag == "p" and "uc-error-subcaption" in cls.split():
            self._in, self._text = "error", []
        elif tag == "a":
            href = a.get("href") or ""
            if href.startswith("/uc?") and "export=download" in href and not self.page.link:
                self.page.link = href
            f, d = _FILE_LINK.search(href), _FOLDER_LINK.search(href)
            if f or d:
                self._anchor = ("file" if f else "folder", (f or d).group(1), [], None)
        if self._anchor is not None and "flip-entry-title" in cls.split():
            self._title_div, self._text = 1, []
        elif self._title_div:
            self._title_div += 1

    def handle_endtag(self, tag):
        if tag == "title" and self._in == "title":
            self.page.title, self._in = "".join(self._text).strip(), None
        elif tag == "form" and self._in == "form":
            self._in = None
        elif tag == "p" and self._in == "error":
            self.page.error, self._in = " ".join("".join(self._text).split()), None
        elif self._title_div:
            self._title_div -= 1
            if self._title_div == 0 and self._anchor is not None:
                kind, ident, text, _ = self._anchor
                self._anchor = (kind, ident, text, "".join(self._text).strip())
        if tag == "a" and self._anchor is not None:
            kind, ident, text, title = self._anchor
            name = title if title else " ".join("".join(text).split())
            (self.page.files if kind == "file" else self.page.folders).append((ident, name))
            self._anchor = None

    def handle_data(self, data):
        if self._in in ("title", "error") or self._title_div:
            self._text.append(data)
        if self._anchor is not None:
            self._anchor[2].append(data)


def parse_page(text):
    """A :class:`Page` from the HTML ``text`` of a Drive answer."""
    parser = _Parser()
    parser.feed(text)
    parser.close()
    page = parser.page
    if not page.link and not page.form_action:
        m = _DOWNLOAD_URL.search(text)
        if m:
            page.link = html.unescape(json.loads(f'"{m.group(1)}"'))
    seen = set()
    page.files = [(i, n) for i, n in page.files if not (i in seen or seen.add(i))]
    return page
