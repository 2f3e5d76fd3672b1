"""The random-walk tools end to end on a tiny dataset: labels -> training -> pseudo masks."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from wsss.data.io import load_cam, load_mask, save_cam, save_gray_png, save_index_png
from wsss.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import infer_rw  # noqa: E402
import make_affinity_labels  # noqa: E402
import make_pseudo_masks  # noqa: E402
import train_affinity  # noqa: E402


def scene(i, size=64):
    rng = np.random.default_rng(i)
    img = np.full((size, size, 3), (40, 110, 50), np.uint8)
    obj = np.zeros((size, size), bool)
    y, x = rng.integers(8, 24, 2)
    obj[y:y + 28, x:x + 28] = True
    img[obj] = (210, 190, 60) if i % 2 else (60, 80, 220)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    cam = np.exp(-((yy - y - 14) ** 2 + (xx - x - 14) ** 2) / (2 * 10.0 ** 2)).astype(np.float32)
    return img, obj, cam[None] / cam.max()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rw")
    root = tmp / "data"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "class_names.txt").write_text("sun\nsea\n")
    ids = [f"im{i:02d}" for i in range(8)]
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    for i, image_id in enumerate(ids):
        img, obj, cam = scene(i)
        Image.fromarray(img).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        save_index_png(root / "SegmentationClass" / f"{image_id}.png", obj.astype(np.uint8) * (1 + i % 2))
        save_cam(tmp / "cams" / f"{image_id}.npz", [i % 2], cam[:, ::4, ::4], cam)
        save_gray_png(tmp / "sal" / f"{image_id}.png", np.where(obj, 240, 5).astype(np.uint8))
    cfg = yaml.safe_load((ROOT / "configs/synthetic/affinity.yaml").read_text())
    cfg.pop("_base_")
    cfg["data"] = {"dataset": "auto", "root": str(root), "train_split": "train"}
    cfg["model"].update(backbone="resnet18", output_stride=16, weights=None, backbone_kwargs={"width": 8})
    cfg["method"]["radius"] = 5
    cfg["train"].update(epochs=2, batch_size=4, num_workers=0, log_every=1, seed=0)
    cfg["augment"] = {"resize_long": [56, 72], "hflip": True, "crop": 64}
    assert cfg["infer"]["bg_threshold"] == "best"  # the synthetic config leaves it to runners/3-rw.sh
    cfg["infer"].update(pad_size=64, batch_size=3, num_workers=0, bg_threshold=0.3, crf=None)
    (tmp / "affinity.yaml").write_text(yaml.safe_dump(cfg))
    return tmp, ids


@pytest.mark.slow
def test_stage_end_to_end(tiny, capsys):
    tmp, ids = tiny
    cfg = str(tmp / "affinity.yaml")
    assert make_affinity_labels.main(["--config", cfg, "--cams", str(tmp / "cams"), "--saliency", str(tmp / "sal"),
                                      "--out", str(tmp / "labels"), "--workers", "2"]) == 0
    assert "[make_affinity_labels] train: 8 written" in capsys.readouterr().out
    label = load_mask(tmp / "labels" / "im01.png")
    assert set(np.unique(label)) <= {0, 2, 255} and (label == 2).any() and (label == 0).any()
    assert (tmp / "labels" / "config.yaml").is_file()
    make_affinity_labels.main(["--config", cfg, "--cams", str(tmp / "cams"), "--saliency", str(tmp / "sal"),
                               "--out", str(tmp / "labels")])
    assert "0 written, 8 skipped" in capsys.readouterr().out

    assert train_affinity.main(["--config", cfg, "--labels", str(tmp / "labels"), "--exp", str(tmp / "exp")]) == 0
    assert (tmp / "exp" / "checkpoints" / "last.pth").is_file()
    assert "[train_affinity] 8 images, 2 epochs, 4 steps" in capsys.readouterr().out

    argv = ["--exp", str(tmp / "exp"), "--split", "train", "--cams", str(tmp / "cams"), "--out", str(tmp / "pseudo"),
            "--save-rw", str(tmp / "rw")]
    assert infer_rw.main(argv) == 0
    assert "8 masks, 0 skipped" in capsys.readouterr().out
    first = {i: load_mask(tmp / "pseudo" / f"{i}.png") for i in ids}
    for n, i in enumerate(ids):
        assert first[i].shape == (64, 64)
        assert set(np.unique(first[i])) <= {0, 1 + n % 2}
        rw = load_cam(tmp / "rw" / f"{i}.npz")
        assert rw["hr_cam"].shape == (1, 64, 64) and rw["cam"].shape == (1, 16, 16)
        assert rw["keys"].tolist() == [n % 2]
    assert (tmp / "pseudo" / "config.yaml").is_file()
    infer_rw.main(argv)
    assert "0 masks, 8 skipped" in capsys.readouterr().out
    # the pool (with a CRF) writes the same masks as one process
    over = ["--overwrite", "infer.crf={preset: pnoc_rw}"]
    infer_rw.main(argv[:-4] + ["--out", str(tmp / "p1")] + over)
    infer_rw.main(argv[:-4] + ["--out", str(tmp / "p2"), "--workers", "2"] + over)
    for i in ids:
        assert np.array_equal(load_mask(tmp / "p1" / f"{i}.png"), load_mask(tmp / "p2" / f"{i}.png"))

    # scores only (runners/3-rw.sh with bg_threshold best), then masks from the saved scores at the
    # same threshold: the masks of the one-pass run, up to the fp16 rounding of the saved scores
    scores = ["--exp", str(tmp / "exp"), "--split", "train", "--cams", str(tmp / "cams"), "--scores-only",
              "--save-rw", str(tmp / "rw2"), "infer.bg_threshold=best"]
    assert infer_rw.main(scores) == 0
    assert "8 walked score files, 0 skipped" in capsys.readouterr().out
    assert not (tmp / "exp" / "pseudo").exists()
    infer_rw.main(scores)
    assert "0 walked score files, 8 skipped" in capsys.readouterr().out
    assert make_pseudo_masks.main(["--data", str(tmp / "data"), "--split", "train", "--scores", str(tmp / "rw2"),
                                   "--threshold", "0.3", "--out", str(tmp / "p3")]) == 0
    differ = sum(int((load_mask(tmp / "p3" / f"{i}.png") != first[i]).sum()) for i in ids)
    assert differ <= 0.001 * len(ids) * 64 * 64


def test_missing_inputs_raise_config_errors(tiny):
    tmp, _ = tiny
    cfg = str(tmp / "affinity.yaml")
    with pytest.raises(ConfigError):
        make_affinity_labels.main(["--config", cfg, "--cams", str(tmp / "nope"), "--out", str(tmp / "x")])
    with pytest.raises(ConfigError):
        make_affinity_labels.main(["--config", cfg, "--cams", str(tmp / "cams"), "--out", str(tmp / "x"),
                                   "method.labels_fallback.rule=saliency"])
    with pytest.raises(ConfigError):
        train_affinity.main(["--config", cfg, "--labels", str(tmp / "nope"), "--exp", str(tmp / "e")])


def test_infer_rw_needs_a_numeric_threshold_or_scores_only(tiny, tmp_path):
    tmp, _ = tiny
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text((tmp / "affinity.yaml").read_text())
    base = ["--exp", str(exp), "--split", "train", "--cams", str(tmp / "cams")]
    with pytest.raises(ConfigError, match="not a number"):
        infer_rw.main(base + ["infer.bg_threshold=best"])
    with pytest.raises(ConfigError, match="needs --save-rw"):
        infer_rw.main(base + ["--scores-only"])


def test_tool_exits_2_with_a_message(tiny):
    tmp, _ = tiny
    r = subprocess.run([sys.executable, str(ROOT / "tools/make_affinity_labels.py"), "--config",
                        str(tmp / "affinity.yaml"), "--cams", str(tmp / "nope"), "--out", str(tmp / "x")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "CAM folder not found" in r.stderr


@pytest.mark.slow
def test_psa_network_end_to_end(tiny, capsys):
    """model.affinity=psa through the same tools: training, psa's walk (argmax of the walked
    background), AEFT's CRF on the walked scores, and a bad crf_on."""
    tmp, ids = tiny
    cfg = yaml.safe_load((ROOT / "configs/synthetic/affinity_psa.yaml").read_text())
    cfg.pop("_base_")
    cfg["data"] = {"dataset": "auto", "root": str(tmp / "data"), "train_split": "train"}
    cfg["model"].update(backbone="resnet18", weights=None, backbone_kwargs={"width": 8})
    cfg["train"].update(epochs=2, batch_size=4, num_workers=0, log_every=1, seed=0)
    cfg["augment"]["crop"] = 64
    cfg["method"]["radius"] = 3  # an 8 x 8 grid is too small for radius 5 in training
    cfg["infer"].update(batch_size=3, num_workers=0)
    (tmp / "affinity_psa.yaml").write_text(yaml.safe_dump(cfg))
    make_affinity_labels.main(["--config", str(tmp / "affinity_psa.yaml"), "--cams", str(tmp / "cams"),
                               "--out", str(tmp / "labels_psa")])
    assert train_affinity.main(["--config", str(tmp / "affinity_psa.yaml"), "--labels", str(tmp / "labels_psa"),
                                "--exp", str(tmp / "psa")]) == 0
    assert "[train_affinity] 8 images, 2 epochs, 4 steps" in capsys.readouterr().out
    state = __import__("torch").load(tmp / "psa" / "checkpoints" / "last.pth", weights_only=True)["state_dict"]
    assert {"net.f8_3.weight", "net.f8_4.weight", "net.f8_5.weight", "net.f9.weight"} <= set(state)

    base = ["--exp", str(tmp / "psa"), "--split", "train", "--cams", str(tmp / "cams")]
    assert infer_rw.main(base + ["--out", str(tmp / "psa_masks"), "--save-rw", str(tmp / "psa_rw")]) == 0
    out = capsys.readouterr().out
    assert "8 masks" in out and "beta 8 logt 8 radius 5 bg alpha 16" in out
    for n, i in enumerate(ids):
        assert set(np.unique(load_mask(tmp / "psa_masks" / f"{i}.png"))) <= {0, 1 + n % 2}
        rw = load_cam(tmp / "psa_rw" / f"{i}.npz")
        assert rw["cam"].shape == (1, 16, 16) and rw["hr_cam"].shape == (1, 64, 64)  # CAM-file contract
    aeft = base + ["--out", str(tmp / "aeft_masks"), "infer.preset=aeft", "--workers", "2"]
    assert infer_rw.main(aeft) == 0
    assert "bg alpha 19, crf {'preset': 'psa', 't': 1}" in capsys.readouterr().out
    changed = sum(int((load_mask(tmp / "aeft_masks" / f"{i}.png") != load_mask(tmp / "psa_masks" / f"{i}.png")).sum())
                  for i in ids)
    assert changed > 0  # another alpha and logt, and the CRF on the scores
    with pytest.raises(ConfigError, match="crf_on"):
        infer_rw.main(base + ["--out", str(tmp / "x"), "infer.crf_on=probs"])
