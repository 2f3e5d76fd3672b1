"""benchmarks/ref_pipeline.py, wsss side: the training data pipelines it times build through the
current method API and yield the requested number of images (a broken call went unnoticed until a
recorded run)."""

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    data = load_script(ROOT / "benchmarks/ref_data.py", "bench_ref_data").make_bench_set(
        tmp_path_factory.mktemp("bench") / "voc", n_train=8, n_val=2)
    return load_script(ROOT / "benchmarks/ref_pipeline.py", "bench_ref_pipeline"), data


@pytest.mark.parametrize("row", ["cam", "ccamh"])
def test_wsss_pipeline_yields_the_images(bench, row, tmp_path):
    pipeline, data = bench
    out = tmp_path / "out.json"
    pipeline.main(["--side", "wsss", "--row", row, "--data", str(data), "--images", "8", "--batch-size", "4",
                   "--crop", "64", "--resize-long", "72,96", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["images"] == 8 and res["images_per_s"] > 0
