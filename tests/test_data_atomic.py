"""Atomic writes: temporary names, and removal of what a killed writer left."""

import os
import subprocess
import sys

from wsss.cli import final_name
from wsss.data.io import HOST, TEMPORARY, atomic_path, remove_stale_temporaries


def test_stale_temporaries_of_dead_writers_are_removed_live_and_foreign_ones_kept(tmp_path):
    with atomic_path(tmp_path / "a.png") as tmp:  # a live writer: this process
        assert TEMPORARY.fullmatch(tmp.name)["pid"] == str(os.getpid())
        assert final_name(tmp) == str(tmp_path / "a.png")
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
        sub = tmp_path / "raw"
        sub.mkdir()
        gone = [tmp_path / f".b.png.{HOST}-{dead}.abcd1234.tmp.png", sub / f".c.png.{HOST}-{dead}.abcd_234.tmp.png"]
        kept = [tmp_path / f".d.png.otherhost-{dead}.abcd1234.tmp.png", tmp_path / ".e.png.tmp"]
        for p in gone + kept:
            p.write_bytes(b"x")
        assert remove_stale_temporaries(tmp_path, "b.png") == 1 and not gone[0].exists() and gone[1].exists()
        assert remove_stale_temporaries(tmp_path) == 1 and not gone[1].exists()
        assert tmp.exists() and all(p.exists() for p in kept)
    assert (tmp_path / "a.png").exists() and not tmp.exists()
    assert remove_stale_temporaries(tmp_path / "missing") == 0
