"""CPN's complementary patch pairs (wsss/cams/complementary.py): the masks, the draws, and the
superpixel ids through the real training pipeline."""

import random

import numpy as np
import pytest
import torch

from wsss.cams.complementary import (IDS_MAP, KEEP_MAP, RHO_KEY, ComplementaryPatches, grid_pair,
                                     hidden_superpixels, slic_superpixels)
from wsss.cams.cpn import CPN
from wsss.data import build_dataset, collate
from wsss.data.synthetic import generate
from wsss.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from wsss.errors import ConfigError


def normalised(image):
    return ((image.astype(np.float32) / 255 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)).astype(np.float32)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cp") / "data"
    generate(root, seed=5, n_train=6, n_val=1, size=96, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def crop(data):
    ds = build_dataset("synthetic", data, "train")
    return normalised(ds[0]["image"])


@pytest.mark.parametrize("strategy", ["superpixel", "grid"])
def test_the_two_halves_are_complementary_and_cover_the_image(crop, strategy):
    random.seed(0)
    step = ComplementaryPatches(strategy, n_segments=60, grid_sizes=(32, 64))
    out = step({"image": crop, "maps": {}})
    keep = out["maps"][KEEP_MAP]
    assert keep.dtype == np.float32 and keep.shape == crop.shape[:2]
    assert set(np.unique(keep)) <= {0.0, 1.0} and 0 < keep.mean() < 1
    x = torch.from_numpy(crop).permute(2, 0, 1)
    s = torch.from_numpy(keep)
    x1, x2 = x * s, x * (1 - s)
    assert torch.equal(x1 + x2, x)                       # together they are the image
    assert not ((x1 != 0) & (x2 != 0)).any()             # no pixel is visible in both
    if strategy == "superpixel":
        assert out[RHO_KEY] == pytest.approx(float(keep.mean()))
    assert out["image"] is crop                          # the crop itself is not changed


def test_superpixels_are_hidden_whole_and_exactly_half_of_them():
    rng = np.random.default_rng(0)
    for num in (1, 7, 300, 301):
        hidden = hidden_superpixels(num, "half", rng)
        assert not hidden[0] and hidden.sum() == num // 2
    ids = np.repeat(np.arange(1, 11, dtype=np.int32), 5).reshape(5, 10)   # 10 superpixels, 5 px each
    keep = ~hidden_superpixels(10, "half", rng)[ids]
    for i in range(1, 11):
        assert len(np.unique(keep[ids == i])) == 1      # a superpixel is kept or hidden whole
    assert keep.mean() == 0.5


def test_reference_draw_hides_about_39_percent():
    """floor((N + 1) / 2) draws from {0..N} with replacement: E[hidden share] = 1 - (1 - 1/(N+1))^((N+1)/2)."""
    rng = np.random.default_rng(2)
    n = 300
    shares = [hidden_superpixels(n, "reference", rng)[1:].mean() for _ in range(400)]
    expected = 1 - (1 - 1 / (n + 1)) ** ((n + 1) // 2)
    assert expected == pytest.approx(0.3935, abs=1e-3)
    assert np.mean(shares) == pytest.approx(expected, abs=0.005)
    assert max(shares) < 0.5


def test_grid_hides_whole_cells_and_rho_counts_cells():
    rng = np.random.default_rng(3)
    image = np.zeros((100, 60, 3), np.float32)  # 100 x 60 with 32-px cells: 4 x 2 cells, edge cells smaller
    for _ in range(20):
        keep, rho, ids = grid_pair(image, rng, grid_sizes=(32,), hide_prob=0.5)
        assert ids is None
        cells = keep[::32, ::32]
        assert cells.shape == (4, 2)
        np.testing.assert_array_equal(keep, np.repeat(np.repeat(cells, 32, 0), 32, 1)[:100, :60])
        assert rho == pytest.approx(cells.mean())
    keep, rho, _ = grid_pair(image, rng, grid_sizes=(128,), hide_prob=0.5)
    assert rho in (0.0, 1.0) and keep.all() == (rho == 1.0)   # one cell: the whole image or nothing


def test_slic_runs_on_the_de_normalised_image_by_default(crop):
    image = crop * np.float32(IMAGENET_STD) + np.float32(IMAGENET_MEAN)
    random.seed(4)
    out = ComplementaryPatches("superpixel", n_segments=50)({"image": crop, "maps": {}})
    np.testing.assert_array_equal(out["maps"][IDS_MAP], slic_superpixels(image, 50))
    random.seed(4)
    ref = ComplementaryPatches("superpixel", n_segments=50, slic_on="normalized")({"image": crop, "maps": {}})
    np.testing.assert_array_equal(ref["maps"][IDS_MAP], slic_superpixels(crop, 50))
    with pytest.raises(ConfigError, match="draw"):
        ComplementaryPatches("superpixel", draw="thirds")
    with pytest.raises(ConfigError, match="strategy"):
        ComplementaryPatches("checkerboard")


def test_superpixel_ids_survive_the_augmentation(data):
    """Ids computed at after_crop arrive in the batch unchanged (int64, ids >= 255 included, no
    255 padding over the padded border), and they are SLIC's ids of the very crop in the batch."""
    cfg = {"data": {"dataset": "synthetic", "root": str(data), "train_split": "train"},
           "augment": {"resize_long": [60, 140], "hflip": True, "color_jitter": 0.3, "crop": 112},
           "method": {"n_segments": 600}}
    dataset = CPN.train_dataset(cfg, cfg["data"])
    random.seed(7)
    samples = [dataset[i] for i in range(4)]
    batch = collate(samples)
    ids, keep = batch["maps"][IDS_MAP], batch["maps"][KEEP_MAP]
    assert ids.dtype == torch.int64 and ids.shape == (4, 112, 112) and keep.dtype == torch.float32
    assert batch[RHO_KEY].shape == (4,)
    assert int(ids.max()) > 255, "the test needs ids above 255"
    for b in range(4):
        image = batch["image"][b].permute(1, 2, 0).numpy()
        expected = slic_superpixels(image * np.float32(IMAGENET_STD) + np.float32(IMAGENET_MEAN), 600)
        np.testing.assert_array_equal(ids[b].numpy(), expected)
        labels = ids[b].numpy()
        for i in np.unique(labels):                      # each superpixel hidden or kept whole
            assert len(np.unique(keep[b].numpy()[labels == i])) == 1
        assert float(batch[RHO_KEY][b]) == pytest.approx(float(keep[b].mean()), abs=1e-6)
    assert all(m is None for m in batch["mask"])
