"""The fault table (docs/faults.md): each bad input, given to a tool as a user would, ends with a
one-paragraph error naming the file and the fix, exit code 2, no traceback and no temporary or
half-written file. Tools run in-process through ``wsss.cli.run_main``."""

import errno
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_tool
from wsss.cli import run_main
from wsss.data.io import load_cam, save_cam, save_index_png
from wsss.data.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "faults.md"

CONFIG = """\
data: {{dataset: synthetic, root: "{root}", train_split: train}}
model: {{backbone: resnet18, output_stride: 16, norm_mode: train, weights: null, backbone_kwargs: {{width: 8}}}}
method: {{name: cam}}
augment: {{resize_long: null, hflip: true, crop: 32}}
train: {{epochs: 1, batch_size: 2, num_workers: 0, channels_last: false, device: cpu, log_every: 1}}
infer: {{scales: [1.0], flip: false, batch_size: 2, num_workers: 0}}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 6 + 2 image synthetic root (32 px), a config, a trained tiny CAM experiment and its
    train-split CAMs, all built once."""
    base = tmp_path_factory.mktemp("faults")
    generate(base / "data", seed=3, n_train=6, n_val=2, size=32, progress=False)
    (base / "cam.yaml").write_text(CONFIG.format(root=base / "data"))
    exp = base / "exp"
    run_main_code(load_tool("train_cam"), ["--config", str(base / "cam.yaml"), "--exp", str(exp)])
    run_main_code(load_tool("infer_cam"), ["--exp", str(exp), "--split", "train", "--out", str(base / "cams")])
    return base


def run_main_code(main, argv):
    with pytest.raises(SystemExit) as e:
        run_main(lambda: main(argv))
    return e.value.code


class Case:
    """A copy of the world in ``tmp`` to break, and helpers to break it."""

    def __init__(self, world, tmp):
        self.tmp = tmp
        for name in ("data", "exp", "cams"):
            shutil.copytree(world / name, tmp / name)
        self.data, self.exp, self.cams = tmp / "data", tmp / "exp", tmp / "cams"
        self.config = tmp / "cam.yaml"
        self.config.write_text(CONFIG.format(root=self.data))
        self.id = (self.data / "ImageSets/Segmentation/train.txt").read_text().split()[0]
        self.jpg = self.data / "JPEGImages" / f"{self.id}.jpg"
        self.mask = self.data / "SegmentationClass" / f"{self.id}.png"
        self.ckpt = self.exp / "checkpoints/last.pth"
        self.cam = self.cams / f"{self.id}.npz"

    def train(self, *extra):
        return "train_cam", ["--config", str(self.config), "--exp", str(self.tmp / "new"), *extra]

    def infer(self, *extra):
        return "infer_cam", ["--exp", str(self.exp), "--split", "train", "--out", str(self.tmp / "out"), *extra]

    def evaluate_cams(self):
        return "evaluate", ["--data", str(self.data), "--split", "train", "--pred", str(self.cams), "--mode", "cam",
                            "--no-contour", "--workers", "1"]

    def truncate(self, path, keep=0.5):
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * keep)])


# row id -> (break the world, return (tool, argv, the file the message must name, a phrase of it))
def corrupt_jpeg(c):
    c.truncate(c.jpg, 0.6)
    return (*c.train("--check-data"), c.jpg, "cannot decode image")


def missing_image(c):
    c.jpg.unlink()
    return (*c.train(), c.jpg, "not found")


def mask_other_size(c):
    save_index_png(c.mask, np.asarray(Image.open(c.mask))[:16, :20])
    return (*c.train(), c.mask, "mask is 20x16 but its image is 32x32")


def mask_unknown_class(c):
    m = np.asarray(Image.open(c.mask)).copy()
    m[0, 0] = 77
    save_index_png(c.mask, m)
    return (*c.train(), c.mask, "class index 77")


def empty_split(c):
    lst = c.data / "ImageSets/Segmentation/train.txt"
    lst.write_text("")
    return (*c.train(), lst, "split list is empty")


def missing_mask(c):
    c.mask.unlink()
    return (*c.train(), c.mask, "neither a mask nor an XML annotation")


def wrong_palette_mask(c):
    rgb = np.stack([np.asarray(Image.open(c.mask))] * 3, -1)
    Image.fromarray(rgb, mode="RGB").save(c.mask)
    return (*c.train(), c.mask, "mode RGB")


def truncated_checkpoint(c):
    c.truncate(c.ckpt)
    return (*c.infer(), c.ckpt, "cannot read checkpoint")


def foreign_checkpoint(c):
    torch.save({"model": {"fc.weight": torch.zeros(3, 3)}}, c.ckpt)
    return (*c.infer(), c.ckpt, "does not fit")


def other_architecture_checkpoint(c):
    # resume the experiment with a wider backbone than the one its checkpoint holds
    return ("train_cam", ["--config", str(c.config), "--exp", str(c.exp), "train.epochs=2",
                          "model.backbone_kwargs.width=16"], c.ckpt, "shape mismatch")


def truncated_cam(c):
    c.truncate(c.cam)
    return (*c.evaluate_cams(), c.cam, "cannot read CAM file")


def cam_wrong_classes(c):
    cam = load_cam(c.cam)
    save_cam(c.cam, [99] * len(cam["keys"]), cam["cam"], cam["hr_cam"])
    return (*c.evaluate_cams(), c.cam, "CAM keys name classes [100")


def non_numeric_config_value(c):
    return (*c.train("train.lr=fast"), None, "train.lr='fast' must be a number")


def unknown_config_key(c):
    return (*c.train("train.epoch=2"), None, "unknown key train.epoch")


def missing_config(c):
    c.config.unlink()
    return (*c.train(), c.config, "config file not found")


def output_not_writable(c):
    blocker = c.tmp / "a_file"
    blocker.write_text("")
    return ("infer_cam", ["--exp", str(c.exp), "--split", "train", "--out", str(blocker / "cams")], blocker,
            "cannot write")


ROWS = {f.__name__: f for f in (
    corrupt_jpeg, missing_image, mask_other_size, mask_unknown_class, empty_split, missing_mask,
    wrong_palette_mask, truncated_checkpoint, foreign_checkpoint, other_architecture_checkpoint, truncated_cam,
    cam_wrong_classes, non_numeric_config_value, unknown_config_key, missing_config, output_not_writable)}


def check_paragraph(err, path, phrase):
    """One ``error: ...`` paragraph (``fix:`` on its indented second line), naming ``path``."""
    assert "Traceback" not in err, err
    text = err[err.rindex("error: "):]
    lines = text.rstrip("\n").split("\n")
    assert all(ln.startswith("  ") for ln in lines[1:]), text
    assert any(ln.startswith("  fix: ") for ln in lines[1:]), text
    assert phrase in text, text
    if path is not None:
        assert str(path) in text, text


def no_temporary_files(tmp):
    left = [p for p in Path(tmp).rglob(".*") if re.search(r"\.tmp", p.name)]
    assert not left, left


@pytest.mark.parametrize("row", list(ROWS))
def test_fault_row(row, world, tmp_path, capsys):
    c = Case(world, tmp_path)
    name, argv, path, phrase = ROWS[row](c)
    before = {p: p.read_bytes() for p in (c.ckpt, c.cam) if p.is_file()}
    capsys.readouterr()
    code = run_main_code(load_tool(name), argv)
    err = capsys.readouterr().err
    assert code == 2, err
    check_paragraph(err, path, phrase)
    no_temporary_files(tmp_path)
    assert not (tmp_path / "new/checkpoints").exists()  # no training started on bad input
    if row == "other_architecture_checkpoint":  # the checkpoint it refused is intact
        assert c.ckpt.read_bytes() == before[c.ckpt]


def test_fault_row_disk_full(world, tmp_path, capsys, monkeypatch):
    """The disk fills after two CAM files: exit 2 naming the file, the two files intact, no
    temporary file left; the rerun (space freed) completes the rest."""
    c = Case(world, tmp_path)
    out = tmp_path / "out"
    real, calls = np.savez, []

    def savez(f, **arrays):
        calls.append(f)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", getattr(f, "name", str(f)))
        return real(f, **arrays)

    monkeypatch.setattr(np, "savez", savez)
    name, argv = c.infer()
    code = run_main_code(load_tool(name), argv)
    err = capsys.readouterr().err
    assert code == 2
    check_paragraph(err, None, "No space left on device")
    assert "free space" in err and f"{out / sorted(c.cams.glob('*.npz'))[2].name}: cannot write" in err
    no_temporary_files(tmp_path)
    written = sorted(out.glob("*.npz"))
    assert len(written) == 2 and all(load_cam(p)["hr_cam"].shape[1:] == (32, 32) for p in written)
    monkeypatch.setattr(np, "savez", real)
    assert run_main_code(load_tool(name), argv) == 0
    assert sorted(p.name for p in out.glob("*.npz")) == sorted(p.name for p in c.cams.glob("*.npz"))


def test_the_page_lists_exactly_the_tested_rows():
    """docs/faults.md: one table row per test id (``test_fault_row[<id>]`` or ``test_fault_row_<id>``)."""
    ids = re.findall(r"`(test_fault_row(?:\[[a-z_]+\]|_[a-z_]+))`", DOC.read_text())
    assert sorted(ids) == sorted([f"test_fault_row[{r}]" for r in ROWS] + ["test_fault_row_disk_full"])
