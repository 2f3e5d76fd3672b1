"""Test helpers for the checkpoint hub: a loopback server that answers like Google Drive and a
plain file host, and small registry entries.

The server (``http.server`` in a thread on 127.0.0.1, port 0) knows, per Drive id, how to answer
(``FakeDrive.modes``): ``direct`` (the file with Content-Disposition), ``confirm`` (the virus-scan
form, then the file from ``/download`` when ``confirm=t`` and the form's ``uuid`` come back),
``quota`` (the quota page, status 200), ``page`` (an HTML page with neither form nor error),
``disguised`` (HTML bytes sent as an octet-stream attachment), ``missing`` (404). ``cut_once``
makes the first transfer of a file stop halfway; ``Range: bytes=N-`` is honoured (206) unless
``ignore_range``; ``slow`` spreads each transfer over that many seconds (2 KiB chunks).
``/files/<name>`` serves direct URLs, ``/embeddedfolderview?id=`` folder listings in Drive's
markup. Every request is recorded in ``requests``.
"""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from wsss.hub import parse_artefact

UUID = "0b5c9d1e-test-uuid"
QUOTA_HTML = ("<html><head><title>Google Drive - Quota exceeded</title></head><body><div class='uc-main'>"
              "<p class=\"uc-error-caption\">Sorry, you can't view or download this file at this time.</p>"
              "<p class=\"uc-error-subcaption\">Too many users have viewed or downloaded this file recently. Please "
              "try accessing the file again later.</p></div></body></html>")
PAGE_HTML = "<!DOCTYPE html><html><head><title>Google Drive - Sign in</title></head><body>Sign in</body></html>"


def confirm_html(base, file_id):
    return (f"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>"
            f"<p>Google Drive can't scan this file for viruses.</p>"
            f"<form id=\"download-form\" action=\"{base}/download\" method=\"get\">"
            f"<input type=\"submit\" id=\"uc-download-link\" value=\"Download anyway\"/>"
            f"<input type=\"hidden\" name=\"id\" value=\"{file_id}\">"
            f"<input type=\"hidden\" name=\"export\" value=\"download\">"
            f"<input type=\"hidden\" name=\"confirm\" value=\"t\">"
            f"<input type=\"hidden\" name=\"uuid\" value=\"{UUID}\"></form></body></html>")


def folder_html(files, folders):
    entries = "".join(
        f"<div class=\"flip-entry\" id=\"entry-{i}\"><div class=\"flip-entry-info\">"
        f"<a href=\"https://drive.google.com/file/d/{i}/view?usp=drive_web\" target=\"_blank\">"
        f"<div class=\"flip-entry-list-icon\"><img src=\"x.png\"></div>"
        f"<div class=\"flip-entry-title\">{n}</div></a></div></div>" for i, n in files)
    entries += "".join(
        f"<div class=\"flip-entry\" id=\"entry-{i}\"><div class=\"flip-entry-info\">"
        f"<a href=\"https://drive.google.com/drive/folders/{i}\" target=\"_blank\">"
        f"<div class=\"flip-entry-title\">{n}</div></a></div></div>" for i, n in folders)
    return f"<!DOCTYPE html><html><head><title>folder</title></head><body>{entries}</body></html>"


class FakeDrive:
    """See the module docstring; ``url`` is the base URL once started (use as a context manager)."""

    def __init__(self):
        self.files, self.names, self.modes, self.folders = {}, {}, {}, {}
        self.cut_once, self.ignore_range, self.slow = set(), False, 0.0
        self.requests = []
        self.url = None

    def add(self, key, data, mode="direct", name=None):
        self.files[key], self.modes[key], self.names[key] = data, mode, name or f"{key}.bin"
        return key

    def __enter__(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send_file(self, key):
                data = fake.files[key]
                rng = self.headers.get("Range")
                start = int(rng.split("=")[1].split("-")[0]) if rng and not fake.ignore_range else 0
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Disposition", f"attachment; filename=\"{fake.names[key]}\"")
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if key in fake.cut_once:
                    fake.cut_once.discard(key)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                step = 2048 if fake.slow else max(len(body), 1)
                for i in range(0, len(body), step):
                    time.sleep(fake.slow * step / len(body))
                    try:
                        self.wfile.write(body[i:i + step])
                    except (BrokenPipeError, ConnectionResetError):  # the client was killed
                        return

            def send_html(self, text, status=200):
                raw = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                u = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                fake.requests.append((u.path, q, self.headers.get("Range")))
                if u.path == "/uc":
                    key = q.get("id")
                    mode = fake.modes.get(key, "missing")
                    if mode == "direct":
                        return self.send_file(key)
                    if mode == "confirm":
                        return self.send_html(confirm_html(fake.url, key))
                    if mode == "quota":
                        return self.send_html(QUOTA_HTML)
                    if mode == "page":
                        return self.send_html(PAGE_HTML)
                    if mode == "disguised":
                        fake.files[key] = PAGE_HTML.encode()
                        return self.send_file(key)
                    return self.send_html("<html><title>Not Found</title></html>", 404)
                if u.path == "/download":
                    if q.get("confirm") == "t" and q.get("uuid") == UUID and q.get("id") in fake.files:
                        return self.send_file(q["id"])
                    return self.send_html("<html><title>Bad request</title></html>", 400)
                if u.path.startswith("/files/"):
                    key = u.path[len("/files/"):]
                    return self.send_file(key) if key in fake.files else self.send_html("<html></html>", 404)
                if u.path == "/embeddedfolderview" and q.get("id") in fake.folders:
                    return self.send_html(folder_html(*fake.folders[q["id"]]))
                return self.send_html("<html><title>Not Found</title></html>", 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def artefact(name="test/item", **fields):
    """A registry entry for tests (a Drive file of a P-NOC-like CAM net unless ``fields`` say otherwise)."""
    raw = {"seed": "test", "kind": "cam-net", "sources": [{"drive": "1" + "a" * 27}], "container": "file",
           "filename": "item.pth", "status": "files"}
    raw.update(fields)
    return parse_artefact(name, raw)


def load_tool(name):
    """The module of ``tools/<name>.py`` (tools/ is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"wsss_tool_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def run_tool(capsys):
    """``run(name, argv) -> (exit code, stdout + stderr)`` of a tool run through ``run_main``."""
    from wsss.cli import run_main

    def run(name, argv):
        module = load_tool(name)
        with pytest.raises(SystemExit) as e:
            run_main(lambda: module.main(argv))
        out = capsys.readouterr()
        return e.value.code, out.out + out.err

    return run
