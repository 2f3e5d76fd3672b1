"""tools/train_cam.py and tools/infer_cam.py end to end on a tiny synthetic dataset (CPU)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from wsss.data.io import load_cam, load_mask
from wsss.data.synthetic import generate
from wsss.errors import ConfigError

TOOLS = Path(__file__).resolve().parents[1] / "tools"
CONFIG = Path(__file__).resolve().parents[1] / "configs/synthetic/puzzle.yaml"


def tool(name):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "data"
    generate(root, n_train=16, n_val=3, size=64, workers=1, progress=False)
    return root


TINY = ["model.backbone_kwargs.width=8", "train.epochs=1", "train.batch_size=8", "train.num_workers=0",
        "augment.resize_long=[56,72]", "augment.crop=64", "infer.num_workers=0", "infer.batch_size=2"]


@pytest.mark.slow
def test_train_then_infer_with_skip_and_overwrite(data, tmp_path, capsys):
    exp = tmp_path / "exp"
    assert tool("train_cam")(["--config", str(CONFIG), "--data", str(data), "--exp", str(exp), *TINY]) == 0
    assert (exp / "checkpoints/last.pth").is_file() and (exp / "metrics.jsonl").is_file()
    saved = (exp / "config.yaml").read_text()
    assert "name: puzzle" in saved and "dataset: synthetic" in saved
    assert "2 steps" in capsys.readouterr().out  # 16 images / batch 8

    infer = tool("infer_cam")
    out = tmp_path / "cams"
    assert infer(["--exp", str(exp), "--split", "val", "--out", str(out), "--scales", "1,2"]) == 0
    files = sorted(out.glob("*.npz"))
    assert len(files) == 3 and (out / "config.yaml").is_file()
    for f in files:
        c = load_cam(f)
        gt = load_mask(data / "SegmentationClass" / f"{f.stem}.png")
        present = sorted({int(v) - 1 for v in np.unique(gt) if 0 < v < 255})
        assert c["keys"].tolist() == present
        assert c["cam"].shape == (len(present), 16, 16) and c["hr_cam"].shape == (len(present), 64, 64)
        peaks = c["hr_cam"].reshape(len(present), -1).max(1)  # max-normalised, or 0 if the CAM is all <= 0
        assert np.all((np.abs(peaks - 1) < 1e-3) | (peaks == 0))
    capsys.readouterr()
    infer(["--exp", str(exp), "--split", "val", "--out", str(out)])
    assert "0 images inferred, 3 skipped" in capsys.readouterr().out
    infer(["--exp", str(exp), "--split", "val", "--out", str(out), "--overwrite"])
    assert "3 images inferred" in capsys.readouterr().out


def test_bad_inputs_raise_wsss_errors(data, tmp_path):
    with pytest.raises(ConfigError, match="unknown CAM method"):
        tool("train_cam")(["--method", "nope", "--config", str(CONFIG), "--data", str(data)])
    with pytest.raises(ConfigError):
        tool("infer_cam")(["--exp", str(tmp_path / "missing"), "--split", "val"])
