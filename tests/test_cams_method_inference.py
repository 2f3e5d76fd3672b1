"""Method-owned CAM inference: the view/combine hooks, a stored background channel through the
CAM file, evaluate, make_pseudo_masks and the random walk, and inference from a trained
checkpoint alone."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from wsss.cams import METHODS
from wsss.cams.inference import image_pyramid, multiscale_cams
from wsss.cams.vanilla import VanillaCAM
from wsss.data.io import load_cam, load_mask, save_cam, save_index_png
from wsss.data.synthetic import generate
from wsss.errors import CheckpointError, ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
MODEL = {"backbone": "resnet18", "output_stride": 16, "weights": None, "backbone_kwargs": {"width": 8}}



class WithBackground(VanillaCAM):
    """C + 1 outputs: a constant background score ``level`` in front of the ReLU'd CAMs."""

    background = True
    level = 0.5

    def view_maps(self, images, labels):
        cams = super().view_maps(images, labels)
        return torch.cat([torch.full_like(cams[:, :1], self.level), cams], dim=1)

    def combine(self, maps):  # keep the raw sums (scales x flips) so the test can compute them
        return maps


class ArgmaxOnly(VanillaCAM):
    """ICAM's rule on the summed maps: only each pixel's strongest class survives, then max-norm."""

    def combine(self, maps):
        keep = maps == maps.amax(0, keepdim=True)
        return super().combine(maps * keep)


def build(cls):
    torch.manual_seed(0)
    return cls({"model": MODEL, "method": {}}, 3).eval()


def test_default_inference_is_the_multiscale_formula():
    task = build(VanillaCAM)
    image = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    inputs = image_pyramid(image, (0.5, 1.0))
    [maps] = task.infer_cams(inputs, image.shape[:2], [[0, 2]])
    [(cam, hr)] = multiscale_cams(task.cam_forward, inputs, image.shape[:2], [[0, 2]])
    assert set(maps) == {"cam", "hr_cam"}
    assert torch.equal(maps["cam"], cam) and torch.equal(maps["hr_cam"], hr)


class Raw(VanillaCAM):
    def combine(self, maps):  # the plain sums over views
        return maps


def test_a_method_combines_views_its_own_way():
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    inputs = image_pyramid(image, (1.0, 0.5))
    [raw] = build(Raw).infer_cams(inputs, (32, 32), [[0, 1, 2]])
    [only] = build(ArgmaxOnly).infer_cams(inputs, (32, 32), [[0, 1, 2]])
    for key in ("cam", "hr_cam"):
        sums = raw[key]
        kept = sums * (sums == sums.amax(0, keepdim=True))
        expected = kept / (kept.amax(dim=(1, 2), keepdim=True) + 1e-5)
        assert torch.allclose(only[key], expected, atol=1e-6)
        assert ((only[key] > 0).sum(0) <= 1).all()  # at most one class per pixel


def test_background_channel_is_kept_and_saved(tmp_path):
    task = build(WithBackground)
    image = np.random.default_rng(2).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    [maps] = task.infer_cams(image_pyramid(image, (0.5, 1.0)), image.shape[:2], [[1]])
    # two scales x two flips of a constant 0.5
    assert torch.allclose(maps["hr_cam_bg"], torch.full((32, 48), 2.0)) and maps["cam_bg"].shape == (8, 12)
    assert maps["hr_cam"].shape == (1, 32, 48)
    save_cam(tmp_path / "a.npz", [1], **maps)
    back = load_cam(tmp_path / "a.npz")
    np.testing.assert_allclose(back["hr_cam_bg"], 2.0)
    np.testing.assert_allclose(back["hr_cam"], maps["hr_cam"].numpy(), rtol=1e-3, atol=1e-3)


def test_wrong_channel_count_is_a_clear_error():
    class Missing(WithBackground):
        def view_maps(self, images, labels):  # forgets the background it declares
            return VanillaCAM.view_maps(self, images, labels)

    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ConfigError, match="returned 3 channels, expected 3 classes \\+ a background"):
        build(Missing).infer_cams(image_pyramid(image, (1.0,)), (16, 16), [[0]])


# --------------------------------------------------------------- stored background downstream
@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 2-image synthetic split and hand-made CAM files with and without a background map."""
    tmp = tmp_path_factory.mktemp("bg")
    root = tmp / "data"
    generate(root, seed=3, n_train=2, n_val=1, size=32, workers=1, progress=False)
    ids = (root / "ImageSets/Segmentation/train.txt").read_text().split()
    for i in ids:
        gt = load_mask(root / "SegmentationClass" / f"{i}.png")
        keys = sorted({int(v) - 1 for v in np.unique(gt) if 0 < v < 255})
        hr = np.stack([(gt == k + 1) * 0.6 + 0.2 for k in keys]).astype(np.float32)  # 0.8 inside, 0.2 out
        bg = np.where((gt > 0) & (gt < 255), 0.1, 0.7).astype(np.float32)
        save_cam(tmp / "plain" / f"{i}.npz", keys, hr[:, ::4, ::4], hr)
        save_cam(tmp / "bg" / f"{i}.npz", keys, hr[:, ::4, ::4], hr, bg[::4, ::4], bg)
        save_cam(tmp / "mixed" / f"{i}.npz", keys, hr[:, ::4, ::4], hr, *((bg[::4, ::4], bg) if i == ids[0] else ()))
        save_index_png(tmp / "exact" / f"{i}.png", np.where(gt == 255, 0, gt))  # what the stored bg gives
    return root, tmp, ids


def test_evaluate_uses_the_stored_background(scene, capsys, tool):
    root, tmp, _ = scene
    evaluate = tool("evaluate")
    common = ["--data", str(root), "--split", "train", "--no-contour"]
    evaluate([*common, "--pred", str(tmp / "exact"), "--mode", "png"])
    exact = capsys.readouterr().out.splitlines()[-1]
    evaluate([*common, "--pred", str(tmp / "bg"), "--mode", "cam"])
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == exact and "best threshold" not in out  # bg 0.1 < 0.8 inside, 0.7 > 0.2 out
    evaluate([*common, "--pred", str(tmp / "plain"), "--mode", "cam", "--thresholds", "0.9"])
    assert capsys.readouterr().out.splitlines()[-1] != exact  # the same maps at t 0.9: nothing is foreground
    with pytest.raises(DataError, match="store a background map and others do not"):
        evaluate(["--data", str(root), "--split", "train", "--pred", str(tmp / "mixed"), "--mode", "cam"])


def test_evaluate_can_sweep_files_that_store_a_background(scene, tool):
    """--ignore-stored-background: the toolkit's sweep over the foreground channels of such files
    (ICAM's second protocol), the same numbers as the files without the map; protocol recorded."""
    root, tmp, _ = scene
    evaluate = tool("evaluate")
    common = ["--data", str(root), "--split", "train", "--mode", "cam", "--thresholds", "0.1:0.9:0.1"]
    out = {}
    for name, folder, extra in (("plain", "plain", []), ("swept", "bg", ["--ignore-stored-background"]),
                                ("mixed", "mixed", ["--ignore-stored-background"]), ("stored", "bg", [])):
        evaluate([*common, "--pred", str(tmp / folder), "--out", str(tmp / f"{name}.json"), *extra])
        out[name] = json.loads((tmp / f"{name}.json").read_text())
    assert out["plain"]["protocol"] == out["swept"]["protocol"] == out["mixed"]["protocol"] == "sweep"
    for key in ("miou", "threshold", "curve", "contour_f"):
        assert out["swept"][key] == out["plain"][key] == out["mixed"][key]
    assert out["stored"]["protocol"] == "stored-background" and "threshold" not in out["stored"]
    assert out["stored"]["contour_f"]["mean_f"] > 0


def test_pseudo_masks_use_the_stored_background(scene, tool):
    root, tmp, ids = scene
    make = tool("make_pseudo_masks")
    assert make(["--data", str(root), "--split", "train", "--scores", str(tmp / "bg"), "--out", str(tmp / "m")]) == 0
    for i in ids:
        gt = load_mask(root / "SegmentationClass" / f"{i}.png")
        np.testing.assert_array_equal(load_mask(tmp / "m" / f"{i}.png"), np.where(gt == 255, 0, gt))
    with pytest.raises(ConfigError, match="no --threshold"):
        make(["--data", str(root), "--split", "train", "--scores", str(tmp / "plain"), "--out", str(tmp / "n")])


def test_random_walk_walks_the_stored_background(scene, tool):
    """An untrained AffinityNet: whatever its boundaries, a stored background far above the CAMs
    wins everywhere and one far below loses wherever a class has mass."""
    root, tmp, ids = scene
    from wsss.affinity import AFFINITY_TASKS
    from wsss.engine import save_checkpoint

    cfg = {"data": {"dataset": "synthetic", "root": str(root), "train_split": "train"},
           "model": {**MODEL, "norm_mode": "frozen", "edge_width": 8}, "method": {"name": "irn"},
           "infer": {"preset": "irn", "beta": 10, "logt": 2, "radius": 3, "pad_size": 32, "bg_threshold": 0.3,
                     "batch_size": 2, "num_workers": 0}}
    exp = tmp / "aff"
    task = AFFINITY_TASKS.get("irn")(cfg, 8)
    save_checkpoint(exp / "checkpoints" / "last.pth", {"state_dict": task.state_dict(), "config": cfg})
    (exp / "config.yaml").write_text(yaml.safe_dump(cfg))
    infer_rw = tool("infer_rw")
    for level, expect_fg in ((50.0, False), (0.0, True)):
        cams = tmp / f"walk{level}"
        for i in ids:
            c = load_cam(tmp / "bg" / f"{i}.npz")
            save_cam(cams / f"{i}.npz", c["keys"], c["cam"], c["hr_cam"], np.full_like(c["cam_bg"], level),
                     np.full_like(c["hr_cam_bg"], level))
        out = tmp / f"masks{level}"
        assert infer_rw(["--exp", str(exp), "--split", "train", "--cams", str(cams), "--out", str(out),
                         "--save-rw", str(tmp / f"rw{level}")]) == 0
        for i in ids:
            fg = load_mask(out / f"{i}.png") > 0
            assert fg.all() if expect_fg else not fg.any()
            assert "hr_cam_bg" in load_cam(tmp / f"rw{level}" / f"{i}.npz")


# ------------------------------------------------------------------ the trained checkpoint alone
def test_a_trained_experiment_infers_with_its_checkpoint_alone(tmp_path, tool):
    data = tmp_path / "data"
    generate(data, n_train=8, n_val=2, size=64, workers=1, progress=False)
    exp = tmp_path / "exp"
    tiny = ["model.backbone_kwargs.width=8", "train.epochs=1", "train.batch_size=4", "train.num_workers=0",
            "augment.resize_long=null", "augment.crop=64"]
    assert tool("train_cam")(["--config", str(ROOT / "configs/synthetic/cam.yaml"), "--data", str(data),
                              "--exp", str(exp), *tiny]) == 0
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    assert saved["method"] == {"name": "cam", "label_smoothing": 0.0}  # effective options saved
    # as a downloaded experiment: its config names ImageNet weights this machine does not have
    saved["model"]["weights"] = str(tmp_path / "missing" / "resnet18-imagenet.pth")
    saved["model"]["backbone_init"] = str(tmp_path / "missing" / "other.pth")
    (exp / "config.yaml").write_text(yaml.safe_dump(saved))
    out = tmp_path / "cams"
    assert tool("infer_cam")(["--exp", str(exp), "--split", "val", "--out", str(out), "--scales", "1",
                              "infer.num_workers=0"]) == 0
    assert len(list(out.glob("*.npz"))) == 2
    with pytest.raises(CheckpointError, match="resnet18-imagenet.pth"):  # training it would need the file
        METHODS.get("cam")(saved, 8)
