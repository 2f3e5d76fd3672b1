"""tools/reproduce.py: the dry run of a published table, and a whole table run offline against
a loopback Drive (download -> convert -> the toolkit's own tools -> table next to the numbers)."""

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hub_fakes import FakeDrive, run_tool  # noqa: F401  (fixture)
from PIL import Image

from wsss.data import build_dataset
from wsss.data.synthetic import generate
from wsss.hub import parse_artefact
from wsss.hub.convert import build_task, experiment_config

ID_CAM, ID_FILES = "1" + "C" * 32, "1" + "F" * 32


@pytest.fixture
def dry_run(tmp_path, run_tool, monkeypatch):
    """``dry_run(table)``: the output of ``tools/reproduce.py TABLE --dry-run`` (which must write nothing)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WSSS_CACHE", str(tmp_path / "cache"))

    def run(table):
        code, out = run_tool("reproduce", [table, "--dry-run"])
        assert code == 0, out
        assert not (tmp_path / "cache").exists() and not (tmp_path / "experiments").exists()
        return out

    return run


def test_dry_run_lists_downloads_and_commands(dry_run):
    out = dry_run("pnoc-voc")
    assert "Drive file 1CDT89v8ctWOOowCgJkbh0Xj7fCxlQs2_ | Drive file 1X4fsGdDGpDBbWq2n_FGkqOtgOETS0x_P" in out
    assert "convert  pnoc/voc/pnoc-ls (pnoc-classifier) -> experiments/hub/pnoc/voc/pnoc-ls" in out
    assert "tools/infer_cam.py --exp experiments/hub/pnoc/voc/pnoc-ls --split train" in out
    assert "tools/infer_rw.py" in out and "--cams experiments/reproduce/pnoc-voc/rows/cam-pnoc-ls/cams" in out
    assert "tools/infer_seg.py --exp experiments/hub/pnoc/voc/deeplab-pnoc-ls --split test" in out
    assert "evaluation server" in out and "does not reproduce yet" in out  # VOC test PNGs; PoolNet
    assert out.count("\n- ") == 20  # every row of the table


def test_cpn_table_converts_the_bundle_and_sweeps_cpn_range(dry_run):
    out = dry_run("cpn-voc")
    assert "convert  cpn/voc/bundle (cpn) -> experiments/hub/cpn/voc/bundle" in out
    assert "tools/evaluate.py" in out and "--mode cam --thresholds 0.20:0.59:0.01" in out  # halved maps
    assert "no wsss module" not in out


def test_icam_table_converts_its_cam_net_and_scores_contours(tmp_path, run_tool, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WSSS_CACHE", str(tmp_path / "cache"))
    code, out = run_tool("reproduce", ["icam-voc", "--dry-run"])
    assert code == 0, out
    assert "convert  icam/voc/cam (icam-cam) -> experiments/hub/icam/voc/cam" in out
    evaluate = [line for line in out.splitlines() if "tools/evaluate.py" in line]
    assert evaluate and all("--no-contour" not in line for line in evaluate)  # contour: true in tables.yaml
    code, out = run_tool("reproduce", ["psa-voc", "--dry-run"])
    assert all("--no-contour" in line for line in out.splitlines() if "tools/evaluate.py" in line)


def perfect_cams(dataset):
    """P-NOC-format .npy CAM files equal to the ground truth (one-hot maps of the present classes),
    zipped the way the P-NOC release nests them."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(len(dataset)):
            s = dataset[i]
            keys = np.flatnonzero(s["label"])
            hr = np.stack([(s["mask"] == k + 1).astype(np.float32) for k in keys])
            cam = torch.from_numpy(hr[:, ::4, ::4].copy())
            one = io.BytesIO()
            np.save(one, {"keys": np.pad(keys + 1, (1, 0)), "cam": cam, "hr_cam": hr}, allow_pickle=True)
            z.writestr(f"experiments/predictions/pnoc@train/{s['id']}.npy", one.getvalue())
    return buf.getvalue()


@pytest.mark.slow
def test_a_table_runs_offline_end_to_end(tmp_path, run_tool, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    data = tmp_path / "syn"
    generate(data, seed=0, n_train=6, n_val=2, size=64, workers=1, progress=False)
    dataset = build_dataset("synthetic", data, "train")
    entries = {
        "t/cam": {"seed": "pnoc", "kind": "cam-net", "dataset": "synthetic", "classes": dataset.num_classes,
                  "sources": [{"drive": ID_CAM}], "container": "file", "filename": "cam.pth",
                  "converter": "pnoc-classifier", "config": "configs/synthetic/cam.yaml",
                  "overrides": {"model.backbone_kwargs": {"width": 8}}, "status": "convertible"},
        "t/cams": {"seed": "pnoc", "kind": "cams", "sources": [{"drive": ID_FILES}], "container": "archive",
                   "filename": "cams.archive", "status": "files"},
        "t/pending": {"seed": "cpn", "kind": "cam-net", "sources": [{"drive": "1" + "P" * 32}], "container": "file",
                      "filename": "cpn.pth", "status": "module pending"},
    }
    registry, tables = tmp_path / "registry.yaml", tmp_path / "tables.yaml"
    registry.write_text(yaml.safe_dump({"artefacts": entries}))
    tables.write_text(yaml.safe_dump({"tables": {"mini": {"title": "mini table", "dataset": "synthetic", "rows": [
        {"id": "cam", "label": "CAM of the released net", "stage": "cam", "artefact": "t/cam", "split": "train",
         "published": 50.0},
        {"id": "files", "label": "released CAMs", "stage": "cam-files", "artefact": "t/cams", "split": "train",
         "published": 50.0},
        {"id": "cpn", "label": "CPN", "stage": "cam", "artefact": "t/pending", "split": "train",
         "published": 57.4}]}}}))
    # the released classifier: P-NOC era A (model.* + stage aliases + classifier), DataParallel-free
    art = parse_artefact("t/cam", entries["t/cam"])
    task = build_task("cam", experiment_config(art), art.classes)
    bb = task.net.backbone
    state = {**{f"model.{k}": v for k, v in bb.state_dict().items()},
             **{f"stage1.0.{k}": v for k, v in bb.conv1.state_dict().items()},
             "classifier.weight": task.net.head.weight.detach()}
    ckpt = io.BytesIO()
    torch.save(state, ckpt)
    out = tmp_path / "out"
    with FakeDrive() as drive:
        drive.add(ID_CAM, ckpt.getvalue(), mode="confirm")
        drive.add(ID_FILES, perfect_cams(dataset))
        code, log = run_tool("reproduce", ["mini", "--registry", str(registry), "--tables", str(tables),
                                           "--data", str(data), "--drive-url", drive.url, "--cache",
                                           str(tmp_path / "cache"), "--out", str(out), "--exp-root",
                                           str(tmp_path / "hub"), "--workers", "1"])
    assert code == 0, log
    rows = {r["id"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    # ground-truth CAMs: IoU 100 for background and every class present; absent classes count 0
    present = {int(k) for i in range(len(dataset)) for k in np.flatnonzero(dataset[i]["label"])}
    perfect = 100.0 * (len(present) + 1) / (dataset.num_classes + 1)
    assert rows["files"]["measured"] == pytest.approx(perfect) and rows["files"]["status"].startswith("ok")
    assert 0.0 < rows["cam"]["measured"] < 100.0
    assert sorted(p.stem for p in (out / "rows" / "cam" / "cams").glob("*.npz")) == sorted(dataset.ids)
    assert rows["cpn"]["measured"] is None and "no wsss module" in rows["cpn"]["status"]
    md = (out / "table.md").read_text()
    assert f"| released CAMs | train | 50.00 | {perfect:.2f} | {perfect - 50:+.2f} |" in md and "![table](table.png)" in md
    with Image.open(out / "table.png") as im:
        assert im.size[0] > 200 and im.size[1] > 60
    assert (tmp_path / "hub" / "t" / "cam" / "config.yaml").is_file()
    pins = json.loads((tmp_path / "cache" / "pins.json").read_text())
    assert pins["t/cam"]["verified"] is True and len(pins["t/cams"]["sha256"]) == 64
