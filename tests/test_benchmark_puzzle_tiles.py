"""benchmarks/puzzle_tiles_synthetic.py: region means of a CAM, hand-computed, and the table."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from conftest import load_script

from wsss.data.synthetic import CLASSES

ROOT = Path(__file__).resolve().parents[1]
bench = load_script(ROOT / "benchmarks" / "puzzle_tiles_synthetic.py", "puzzle_tiles_bench")


def scene(background):
    mask = np.zeros((4, 4), np.uint8)
    mask[:2, :2] = 3  # class 2 (hexa_yellow) in the top-left quarter
    parts = np.zeros((4, 4), bool)
    parts[0, 0] = True
    return SimpleNamespace(mask=mask, parts=parts, background=background)


def test_region_means_split_part_body_and_which_background():
    cam = np.arange(16, dtype=float).reshape(4, 4) / 15
    own_bg = CLASSES[2].background
    got = bench.region_means(cam, scene(own_bg), 2)
    bg = cam[scene(own_bg).mask == 0].mean()
    assert set(got) == {"part", "body", "bg_preferred"}
    assert got["part"] == 0.0 and got["bg_preferred"] == bg
    assert np.isclose(got["body"], (1 + 4 + 5) / 3 / 15)
    other = bench.region_means(cam, scene((own_bg + 1) % 8), 2)
    assert set(other) == {"part", "body", "bg_other"} and other["bg_other"] == bg


def test_table_has_a_full_and_a_stitched_row_per_net():
    regions = {k: 0.5 for k in bench.REGIONS}
    r = {"regions": {"full": regions, "stitched": regions}, "exact_labels": {"full": 60.0, "stitched": 35.0},
         "re_l1": 0.37}
    lines = bench.render({"cam": r}).splitlines()
    assert lines[2] == "| cam | full | 0.500 | 0.500 | 0.500 | 0.500 | 60.0 | 0.37 |"
    assert lines[3].startswith("| cam | stitched |") and lines[3].endswith("| 35.0 |  |")
