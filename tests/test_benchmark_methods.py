"""benchmarks/methods_synthetic.py: the per-method recipe, resumable stages, the table and the figure."""

import json
from pathlib import Path

import cv2
import pytest
from conftest import load_script

from wsss.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return load_script(ROOT / "benchmarks" / "methods_synthetic.py")


def test_every_registered_method_with_a_synthetic_config_is_listed(bench):
    from wsss.cams import METHODS

    avail = bench.available_methods()
    assert set(avail) == set(METHODS.names())
    assert {"cam", "puzzle", "poc", "pnoc"} <= {m for m, c in avail.items() if c}


def test_pipeline_defaults_and_a_declared_recipe(bench, tmp_path):
    assert bench.pipeline_of(ROOT / "configs/synthetic/pnoc.yaml") == {
        "saliency": "ccamh", "postprocess": "runners/3-rw.sh", "env": {}}
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"_base_: {ROOT / 'configs/synthetic/cam.yaml'}\n"
                   "pipeline: {saliency: none, env: {RW_THRESHOLD: 0.3}}\n")
    assert bench.pipeline_of(cfg) == {"saliency": "none", "postprocess": "runners/3-rw.sh",
                                      "env": {"RW_THRESHOLD": 0.3}}
    cfg.write_text("pipeline: {saliency: poolnet}\n")
    with pytest.raises(ConfigError, match="pipeline.saliency"):
        bench.pipeline_of(cfg)
    cfg.write_text("pipeline: {postprocess: runners/nope.sh}\n")
    with pytest.raises(ConfigError, match="not found"):
        bench.pipeline_of(cfg)


def test_finished_stages_are_skipped_unless_overwrite(bench, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "sh", lambda cmd, env=None: calls.append(cmd))
    clock = bench.StageClock(tmp_path / "stages", overwrite=False)
    clock.run("priors", ["true"], {})
    clock.run("priors", ["true"], {})
    assert calls == [["true"]]
    rec = json.loads((tmp_path / "stages/priors.json").read_text())
    assert rec["command"] == "true" and rec["seconds"] >= 0 and rec["cpu_seconds"] >= 0
    bench.StageClock(tmp_path / "stages", overwrite=True).run("priors", ["true"], {})
    assert len(calls) == 2


def _row(cam, pseudo, seg, secs):
    return {"cam_miou": cam, "cam_threshold": 0.5, "fg_recall": 60.0, "contour_f": 14.0, "saliency_miou": 50.0,
            "pseudo_miou": pseudo, "seg_miou": seg, "seg_crf_miou": seg + 1,
            "stages": {k: {"seconds": v, "cpu_seconds": v} for k, v in secs.items()}}


def test_table_and_figure(bench, tmp_path):
    results = {"cam": _row(36.0, 44.0, 45.0, {"priors": 100, "postprocess": 50, "segmentation": 60}),
               "puzzle": _row(14.5, 20.0, 15.0, {"priors": 150, "saliency": 40, "postprocess": 50,
                                                 "segmentation": 60})}
    table = bench.render_table(results, {"oc": {"seconds": 90.0}})
    lines = table.splitlines()
    assert lines[0].count("|") == lines[1].count("|") == lines[2].count("|")  # one separator per column
    assert lines[2].startswith("| cam | 36.00 | 0.50 |") and lines[2].endswith("| 100 | - | 50 | 60 | 210 |")
    assert lines[3].endswith("| 150 | 40 | 50 | 60 | 300 |")
    assert "ordinary classifier" in table and "90 s" in table
    assert "puzzle -21.50" in table
    bench.draw_figure(results, tmp_path / "fig.png")
    img = cv2.imread(str(tmp_path / "fig.png"))
    assert img is not None and img.shape[0] == 360 and (img < 250).any()


def test_rows_of_an_earlier_run_are_kept_for_methods_this_run_lacks(bench, tmp_path):
    data = {"generator": "wsss.data.synthetic", "seed": 0, "n_train": 2000}
    out = tmp_path / "m.json"
    out.write_text(json.dumps({"data": data, "command": "python benchmarks/methods_synthetic.py --methods cam,pnoc",
                               "shared": {"oc": {"seconds": 90.0}},
                               "results": {"cam": _row(36.0, 44.0, 45.0, {"priors": 100}),
                                           "pnoc": _row(39.0, 48.0, 46.0, {"priors": 300})}}))
    now = {"pnoc": _row(40.0, 49.0, 47.0, {"priors": 280})}
    kept, shared = bench.keep_earlier_rows(out, now, data)
    assert list(kept) == ["cam"] and kept["cam"]["cam_miou"] == 36.0 and shared["oc"]["seconds"] == 90.0
    assert kept["cam"]["run"] == "python benchmarks/methods_synthetic.py --methods cam,pnoc"
    table = bench.render_table({**kept, **now})
    assert "Kept from an earlier run" in table and ": cam, made by" in table and "pnoc +4.00" in table
    assert bench.keep_earlier_rows(out, now, {**data, "seed": 1}) == ({}, {})  # other data: nothing kept
    assert bench.keep_earlier_rows(tmp_path / "none.json", now, data) == ({}, {})


@pytest.mark.slow
def test_the_script_end_to_end_on_a_tiny_set(tmp_path):
    """The whole command on 24 / 6 images of 64 px, one epoch per stage, for vanilla CAM: every stage
    runs, the table, the JSON and the figure are written, and a rerun skips every finished stage."""
    import os
    import subprocess
    import sys

    data, work, out = tmp_path / "data", tmp_path / "work", tmp_path / "res" / "m.json"
    env = dict(os.environ, WSSS_VENV=sys.prefix, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "tools/make_synthetic.py", "--out", str(data), "--train", "24", "--val", "6",
                    "--size", "64"], cwd=ROOT, env=env, check=True, capture_output=True)
    cmd = [sys.executable, "benchmarks/methods_synthetic.py", "--data", str(data), "--work", str(work),
           "--out", str(out), "--methods", "cam", "--overrides", "train.epochs=1 train.batch_size=8 infer.scales=[1.0]"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    row = res["results"]["cam"]
    for key in ("cam_miou", "pseudo_miou", "seg_miou", "seg_crf_miou"):
        assert 0.0 <= row[key] <= 100.0
    assert set(row["stages"]) == {"priors", "saliency", "postprocess", "segmentation"}
    assert res["shared"]["oc"]["seconds"] > 0
    assert "| cam |" in out.with_suffix(".md").read_text()
    assert cv2.imread(str(out.with_suffix(".png"))) is not None
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("finished, skipped") == 5, again.stdout[-2000:]
