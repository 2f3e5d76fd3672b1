"""tools/visualize.py: panel layout, overlay colours, resume, errors."""

import numpy as np
import pytest
from PIL import Image

import tools.visualize as vis
from test_segmentation_train import write_shapes
from wsss.data.io import load_image, load_mask, save_cam, save_index_png, voc_palette
from wsss.errors import ConfigError, DataError


@pytest.fixture()
def setup(tmp_path):
    root = write_shapes(tmp_path / "shapes", n_train=2, n_val=3, size=48)
    cams, pred = tmp_path / "cams", tmp_path / "pred"
    for i in ("va000", "va001", "va002"):
        gt = load_mask(root / "SegmentationClass" / f"{i}.png")
        keys = [k - 1 for k in np.unique(gt) if 0 < k < 255]
        hr = np.stack([(gt == k + 1).astype(np.float32) for k in keys]) if keys else np.zeros((0, 48, 48))
        save_cam(cams / f"{i}.npz", keys, hr[:, ::4, ::4], hr)
        save_index_png(pred / f"{i}.png", np.where(gt > 0, 255, 0).astype(np.uint8))  # all void where objects are
    return root, cams, pred


def test_panels_layout_and_colours(setup, tmp_path, capsys):
    root, cams, pred = setup
    out = tmp_path / "vis"
    args = ["--data", str(root), "--split", "val", "--ids", "va000,va002", "--cams", str(cams),
            "--masks", f"pred={pred}", "--height", "48", "--alpha", "1.0", "--out", str(out)]
    assert vis.main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["index.md", "va000.png", "va002.png", "visualize.yaml"]
    panel = np.asarray(Image.open(out / "va000.png").convert("RGB"))
    tiles = 4  # image, ground truth, CAM, pred
    assert panel.shape == (vis.TITLE_H + 48, tiles * 48 + (tiles - 1) * 4, 3)
    image = load_image(root / "JPEGImages" / "va000.jpg")
    gt = load_mask(root / "SegmentationClass" / "va000.png")
    body = panel[vis.TITLE_H:]
    np.testing.assert_array_equal(body[:, :48], image)
    pal = np.array(voc_palette()).reshape(256, 3)
    obj = gt > 0
    np.testing.assert_array_equal(body[:, 52:100][obj], pal[gt[obj]])  # alpha 1: pure palette colour
    np.testing.assert_array_equal(body[:, 52:100][~obj], image[~obj])  # background left clear
    np.testing.assert_array_equal(body[:, 156:204][obj], 255)  # void drawn white
    assert "2 panels written" in capsys.readouterr().out
    assert vis.main(args) == 0
    assert "0 panels written, 2 skipped" in capsys.readouterr().out


def test_bad_inputs(setup, tmp_path):
    root, cams, pred = setup
    base = ["--data", str(root), "--split", "val", "--out", str(tmp_path / "v")]
    with pytest.raises(ConfigError, match="NAME=DIR"):
        vis.main(base + ["--masks", str(pred)])
    with pytest.raises(DataError, match="directory not found"):
        vis.main(base + ["--masks", f"x={tmp_path / 'missing'}"])
    with pytest.raises(ConfigError, match="not in split"):
        vis.main(base + ["--ids", "nope"])
    (pred / "va001.png").unlink()
    with pytest.raises(DataError, match="va001"):
        vis.main(base + ["--masks", f"pred={pred}"])
