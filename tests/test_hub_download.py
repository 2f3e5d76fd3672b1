"""The hub's downloader against a loopback server that answers like Google Drive (no internet).

Covers: a direct file with Content-Disposition, Drive's virus-scan form then the file, the quota
page, a Range resume after a cut connection (in one run and across runs), a checksum mismatch,
an HTML page instead of a checkpoint, a 404 falling back to the next source, folder listings,
and the tools/download.py command line (exit code 2, nothing left behind).
"""

import hashlib
import io
import json

import pytest
import torch
from hub_fakes import FakeDrive, artefact, run_tool  # noqa: F401  (fixture)

from wsss.errors import DownloadError
from wsss.hub.download import Fetcher, Truncated

ID_A = "1" + "A" * 32
ID_B = "1" + "B" * 32


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def checkpoint_bytes(n=20000, seed=0):
    """A real torch checkpoint (zip) of about ``4 n`` bytes."""
    buf = io.BytesIO()
    torch.save({"w": torch.randn(n, generator=torch.Generator().manual_seed(seed))}, buf)
    return buf.getvalue()


def fetcher(tmp_path, drive, **kw):
    return Fetcher(cache=tmp_path / "cache", drive_url=drive.url, use_gdown=False, progress=False,
                   log=lambda *_: None, **kw)


def leftovers(path):
    return sorted(p.name for p in path.parent.glob("*")) if path.parent.exists() else []


def test_direct_url_with_content_disposition_and_hash_prefix(tmp_path):
    data = checkpoint_bytes()
    digest = hashlib.sha256(data).hexdigest()
    with FakeDrive() as drive:
        name = f"tiny-{digest[:8]}.pth"
        drive.add(name, data, name=name)
        art = artefact(kind="imagenet", status="imagenet", filename=name,
                       sources=[{"url": f"https://example.invalid/models/{name}", "sha256_prefix": digest[:8]}])
        f = fetcher(tmp_path, drive, mirror=f"{drive.url}/files")
        path = f.fetch(art)
        assert path.read_bytes() == data and not path.with_name(path.name + ".part").exists()
        assert f.pins()["test/item"]["sha256"] == digest and f.pins()["test/item"]["served_name"] == name
        n = len(drive.requests)
        assert f.fetch(art) == path and len(drive.requests) == n  # cached: no traffic


def test_hash_prefix_of_the_file_name_is_checked(tmp_path):
    data = checkpoint_bytes()
    with FakeDrive() as drive:
        drive.add("resnet18-f37072fd.pth", data)
        art = artefact(kind="imagenet", status="imagenet", filename="resnet18-f37072fd.pth",
                       sources=[{"url": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
                                 "sha256_prefix": "f37072fd"}])
        with pytest.raises(DownloadError, match="does not start with f37072fd"):
            fetcher(tmp_path, drive, mirror=f"{drive.url}/files").fetch(art)
        dest = art.cache_path(tmp_path / "cache")
        assert leftovers(dest) == []


def test_drive_virus_scan_form_then_file(tmp_path):
    data = checkpoint_bytes(50000)
    with FakeDrive() as drive:
        drive.add(ID_A, data, mode="confirm", name="voc12-big.pth")
        path = fetcher(tmp_path, drive).fetch(artefact(sources=[{"drive": ID_A}]))
        assert path.read_bytes() == data
        paths = [r[0] for r in drive.requests]
        assert paths == ["/uc", "/download"]
        assert drive.requests[1][1] == {"id": ID_A, "export": "download", "confirm": "t", "uuid": "0b5c9d1e-test-uuid"}


def test_quota_page_is_a_clear_error(tmp_path):
    with FakeDrive() as drive:
        drive.add(ID_A, b"x", mode="quota")
        art = artefact(sources=[{"drive": ID_A}])
        with pytest.raises(DownloadError) as e:
            fetcher(tmp_path, drive).fetch(art)
        msg = str(e.value)
        assert "quota" in msg and "Too many users" in msg and "--from PATH" in msg
        assert leftovers(art.cache_path(tmp_path / "cache")) == []


@pytest.mark.parametrize("mode", ["page", "disguised"])
def test_html_page_instead_of_a_checkpoint(tmp_path, mode):
    with FakeDrive() as drive:
        drive.add(ID_A, b"unused", mode=mode)
        art = artefact(sources=[{"drive": ID_A}])
        with pytest.raises(DownloadError, match="HTML page"):
            fetcher(tmp_path, drive).fetch(art)
        assert leftovers(art.cache_path(tmp_path / "cache")) == []


def test_range_resume_after_a_cut_connection(tmp_path):
    data = checkpoint_bytes(60000)
    with FakeDrive() as drive:
        drive.add(ID_A, data)
        drive.cut_once.add(ID_A)
        path = fetcher(tmp_path, drive).fetch(artefact(sources=[{"drive": ID_A}]))
        assert path.read_bytes() == data
        ranges = [r[2] for r in drive.requests]
        assert ranges[0] is None and ranges[1] == f"bytes={len(data) // 2}-"
        pinned = fetcher(tmp_path, drive).pins()["test/item"]["sha256"]
        assert pinned == hashlib.sha256(data).hexdigest()  # hash of the resumed stream = hash of the file


def test_cut_without_retries_keeps_part_and_the_next_run_resumes(tmp_path):
    data = checkpoint_bytes(60000)
    with FakeDrive() as drive:
        drive.add(ID_A, data)
        drive.cut_once.add(ID_A)
        art = artefact(sources=[{"drive": ID_A}])
        with pytest.raises(Truncated, match="rerun to resume"):
            fetcher(tmp_path, drive, retries=0).fetch(art)
        dest = art.cache_path(tmp_path / "cache")
        part = dest.with_name(dest.name + ".part")
        assert not dest.exists() and part.stat().st_size == len(data) // 2
        assert fetcher(tmp_path, drive).fetch(art).read_bytes() == data
        assert drive.requests[-1][2] == f"bytes={len(data) // 2}-" and not part.exists()


def test_server_ignoring_the_range_restarts_the_file(tmp_path):
    data = checkpoint_bytes(60000)
    with FakeDrive() as drive:
        drive.add(ID_A, data)
        drive.cut_once.add(ID_A)
        drive.ignore_range = True
        assert fetcher(tmp_path, drive).fetch(artefact(sources=[{"drive": ID_A}])).read_bytes() == data


def test_checksum_mismatch_removes_the_file(tmp_path):
    data = checkpoint_bytes()
    with FakeDrive() as drive:
        drive.add(ID_A, data)
        art = artefact(sources=[{"drive": ID_A}], sha256="0" * 64, size=len(data))
        with pytest.raises(DownloadError, match="does not match the pinned 0000"):
            fetcher(tmp_path, drive).fetch(art)
        assert leftovers(art.cache_path(tmp_path / "cache")) == []
        short = artefact(sources=[{"drive": ID_A}], size=len(data) + 10)
        with pytest.raises(DownloadError, match="truncated or another file"):
            fetcher(tmp_path, drive).fetch(short)


def test_wrong_file_type_is_refused(tmp_path):
    with FakeDrive() as drive:
        drive.add(ID_A, b"just some bytes, not a checkpoint" * 100)
        with pytest.raises(DownloadError, match="expected torch-zip"):
            fetcher(tmp_path, drive).fetch(artefact(sources=[{"drive": ID_A}]))


def test_dead_first_source_falls_back_to_the_next(tmp_path):
    data = checkpoint_bytes()
    with FakeDrive() as drive:
        drive.add(ID_B, data)
        art = artefact(sources=[{"drive": ID_A}, {"drive": ID_B}])  # ID_A answers 404
        f = fetcher(tmp_path, drive)
        assert f.fetch(art).read_bytes() == data
        assert f.pins()["test/item"]["source"] == f"Drive file {ID_B}"
        with pytest.raises(DownloadError, match="not found"):
            fetcher(tmp_path / "other", drive).fetch(artefact(sources=[{"drive": ID_A}]))


def test_folder_listing_and_files_inside_folders(tmp_path):
    folder, sub = "1" + "F" * 32, "1" + "G" * 32
    ids = ["1" + c * 32 for c in "CDE"]
    with FakeDrive() as drive:
        drive.folders[folder] = ([(ids[0], "2007_000032.png"), (ids[1], "final.pth")], [(sub, "nested")])
        drive.folders[sub] = ([(ids[2], "2007_000039.png")], [])
        for i, content in zip(ids, (b"\x89PNG-a", checkpoint_bytes(), b"\x89PNG-b")):
            drive.add(i, content, mode="confirm" if i == ids[1] else "direct")
        f = fetcher(tmp_path, drive)
        assert f.list_folder(folder) == [("2007_000032.png", ids[0]), ("final.pth", ids[1]),
                                         ("nested/2007_000039.png", ids[2])]
        one = artefact(sources=[{"folder": folder, "file": "final.pth"}], filename="final.pth")
        assert f.fetch(one).read_bytes() == drive.files[ids[1]]
        whole = artefact("test/folder", kind="masks", container="folder", sources=[{"folder": folder}])
        root = f.fetch(whole)
        assert (root / "2007_000032.png").read_bytes() == b"\x89PNG-a"
        assert (root / "nested" / "2007_000039.png").read_bytes() == b"\x89PNG-b"
        assert f.is_cached(whole)
        missing = artefact(sources=[{"folder": folder, "file": "cam.pth"}], filename="cam.pth")
        with pytest.raises(DownloadError, match="no file 'cam.pth'"):
            f.fetch(missing)


def test_download_tool_exit_code_and_from_path(tmp_path, capsys, run_tool):
    data = checkpoint_bytes()
    registry = tmp_path / "registry.yaml"
    registry.write_text(json.dumps({"artefacts": {"test/ckpt": {
        "seed": "test", "kind": "cam-net", "sources": [{"drive": ID_A}], "container": "file",
        "filename": "ckpt.pth", "status": "files", "sha256": hashlib.sha256(data).hexdigest()}}}))
    cache = tmp_path / "cache"
    with FakeDrive() as drive:
        drive.add(ID_A, b"<html><head><title>x</title></head></html>", mode="disguised")
        code, out = run_tool("download", ["test/ckpt", "--registry", str(registry), "--cache", str(cache),
                                          "--drive-url", drive.url, "--no-gdown"])
        assert code == 2 and "HTML page" in out
        assert not any(p.is_file() for p in cache.rglob("*.pth*"))
    local = tmp_path / "downloaded.pth"
    local.write_bytes(data)
    code, out = run_tool("download", ["test/ckpt", "--registry", str(registry), "--cache", str(cache),
                                      "--from", str(local)])
    assert code == 0 and (cache / "test" / "ckpt" / "ckpt.pth").read_bytes() == data
    local.write_bytes(data[:-5])
    code, out = run_tool("download", ["test/ckpt", "--registry", str(registry), "--cache", str(cache),
                                      "--from", str(local), "--force"])
    assert code == 2 and "does not match the pinned" in out
