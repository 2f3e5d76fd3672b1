"""Archive handling of the hub: file types by magic bytes, safe extraction, prediction folders."""

import io
import tarfile
import zipfile

import numpy as np
import pytest
import torch

from wsss.errors import DownloadError
from wsss.hub.archive import prediction_dir, safe_extract, sniff


def add_tar(t, name, data=b"x", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    t.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_sniff_types(tmp_path):
    t = tmp_path / "ckpt.pth"
    torch.save({"w": torch.zeros(3)}, t)
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("cams/2007_000032.npy", b"x")
    tgz = tmp_path / "a.tar.gz"
    with tarfile.open(tgz, "w:gz") as f:
        add_tar(f, "masks/2007_000032.png")
    mx = tmp_path / "a.params"
    mx.write_bytes((0x112).to_bytes(8, "little") + b"\0" * 64)
    html = tmp_path / "page.pth"
    html.write_bytes(b"<!DOCTYPE html><html><head><title>Google Drive</title>")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(t.read_bytes()[:200])
    assert [sniff(p) for p in (t, legacy, z, tgz, mx, html, cut)] == \
        ["torch-zip", "torch-pickle", "zip", "tar", "mxnet", "html", "damaged zip"]


@pytest.mark.parametrize("fmt", ["zip", "tar", "tar.gz", "tar.xz"])
def test_extract_round_trip_and_prediction_dir(tmp_path, fmt):
    files = {f"experiments/predictions/pnoc-ls@train/{i}.npy": bytes([i]) * (i + 1) for i in range(5)}
    files["experiments/README.txt"] = b"readme"
    path = tmp_path / f"cams.{fmt}"
    if fmt == "zip":
        with zipfile.ZipFile(path, "w") as z:
            for n, d in files.items():
                z.writestr(n, d)
    else:
        with tarfile.open(path, "w:" + (fmt.split(".")[1] if "." in fmt else "")) as t:
            for n, d in files.items():
                add_tar(t, n, d)
    out = safe_extract(path, tmp_path / "out")
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    assert prediction_dir(out, (".npy",)) == out / "experiments" / "predictions" / "pnoc-ls@train"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def unsafe_archives(tmp_path):
    """(name, archive path) of archives with one unsafe member after a harmless one."""
    cases = []
    for name, member in (("dotdot", "../evil.txt"), ("absolute", str(tmp_path / "evil.txt"))):
        p = tmp_path / f"{name}.tar"
        with tarfile.open(p, "w") as t:
            add_tar(t, "ok.png")
            add_tar(t, member)
        cases.append((f"tar-{name}", p))
        z = tmp_path / f"{name}.zip"
        with zipfile.ZipFile(z, "w") as f:
            f.writestr("ok.png", b"x")
            f.writestr(zipfile.ZipInfo(member), b"evil")
        cases.append((f"zip-{name}", z))
    for name, kind in (("symlink", tarfile.SYMTYPE), ("hardlink", tarfile.LNKTYPE), ("fifo", tarfile.FIFOTYPE)):
        p = tmp_path / f"{name}.tar"
        with tarfile.open(p, "w") as t:
            add_tar(t, "ok.png")
            add_tar(t, "link.png", kind=kind, link="/etc/passwd")
        cases.append((f"tar-{name}", p))
    z = tmp_path / "symlink.zip"
    with zipfile.ZipFile(z, "w") as f:
        info = zipfile.ZipInfo("link.png")
        info.external_attr = (0o120777 << 16)  # S_IFLNK
        f.writestr(info, "/etc/passwd")
    cases.append(("zip-symlink", z))
    return cases


def test_unsafe_members_are_refused_and_nothing_is_written(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name, archive in unsafe_archives(src):
        dest = tmp_path / "work" / name / "out"
        with pytest.raises(DownloadError, match="absolute path|leaves the destination|link|not a regular file"):
            safe_extract(archive, dest)
        assert not dest.exists(), name
        assert list(dest.parent.iterdir()) == [], name  # no temporary folder left behind
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "work" / "evil.txt").exists()


def test_not_an_archive(tmp_path):
    p = tmp_path / "page.archive"
    p.write_bytes(b"<html><head><title>Quota</title></head></html>")
    with pytest.raises(DownloadError, match="not a zip or tar archive"):
        safe_extract(p, tmp_path / "out")
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(DownloadError, match="not a zip or tar"):
        safe_extract(tmp_path / "a.npy", tmp_path / "out")
