"""benchmarks/ref_setup.py clones a reference at its commit with REF_COMMIT (leaving out files whose
contents the source lacks, listed in REF_MISSING), is a no-op when run again, refuses a folder
that is something else, and links the shims. A throwaway local git repository stands in for a
reference; no network, no venv."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ref_setup  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(*args, cwd):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def source(tmp_path, monkeypatch):
    """A repository with train.py and big.bin whose big.bin blob is then deleted (a partial mirror)."""
    src = tmp_path / "src"
    src.mkdir()
    git("init", "-q", cwd=src)
    (src / "train.py").write_text("print('reference')\n")
    (src / "big.bin").write_text("large file\n")
    git("add", ".", cwd=src)
    git("commit", "-q", "-m", "c", cwd=src)
    commit = git("rev-parse", "HEAD", cwd=src)
    blob = git("rev-parse", "HEAD:big.bin", cwd=src)
    (src / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    monkeypatch.setattr(ref_setup, "REFERENCES", {"X": ("someone/x", commit, "train.py")})
    return src, commit


def test_clone_at_commit_then_skip(tmp_path, source):
    src, commit = source
    refs = tmp_path / "refs"
    refs.mkdir()
    note = ref_setup.clone_reference("X", src, refs)
    assert "cloned" in note and "REF_MISSING" in note
    assert (refs / "X" / "REF_COMMIT").read_text().strip() == commit
    assert (refs / "X" / "train.py").is_file() and not (refs / "X" / "big.bin").exists()
    assert (refs / "X" / "REF_MISSING").read_text() == "big.bin\n"
    assert "present" in ref_setup.clone_reference("X", tmp_path / "nowhere", refs)  # no clone again


def test_refuses_foreign_folder_and_bad_source(tmp_path, source):
    refs = tmp_path / "refs"
    (refs / "X").mkdir(parents=True)
    with pytest.raises(SystemExit, match="exists but is not someone/x"):
        ref_setup.clone_reference("X", source[0], refs)
    with pytest.raises(SystemExit, match="--source X="):
        ref_setup.clone_reference("X", tmp_path / "nowhere", tmp_path / "other")


def test_shims_link(tmp_path):
    assert "->" in ref_setup.install_shims(tmp_path, copy=False)
    assert (tmp_path / "shims").resolve() == ref_setup.SHIMS
    assert "->" in ref_setup.install_shims(tmp_path, copy=False)  # again: unchanged
    (tmp_path / "shims").unlink()
    (tmp_path / "shims").mkdir()
    with pytest.raises(SystemExit, match="--copy-shims"):
        ref_setup.install_shims(tmp_path, copy=False)


def test_source_names_are_checked():
    with pytest.raises(SystemExit, match="NAME one of"):
        ref_setup.parse_sources(["pnoc=/x"])
    assert ref_setup.parse_sources(["PNOC=/x"])["PNOC"] == "/x"
