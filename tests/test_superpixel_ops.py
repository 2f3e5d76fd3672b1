"""Superpixel operations (wsss.superpixel.ops) against hand-computed cases and naive loops."""

import numpy as np
import pytest
import torch

from wsss.superpixel.ops import (OFFSETS9, OFFSETS25, cell_affinity, neighbours, pool_cells, scatter_cells,
                                 upsample_cells, walk_cells)


def one_hot_assoc(k_map):
    """(1, 9, H, W) hard associations from an (H, W) map of channel indices."""
    return torch.nn.functional.one_hot(torch.as_tensor(k_map), 9).permute(2, 0, 1)[None].double()


def random_assoc(b, h, w, seed=0, sharp=2.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 9, h, w, generator=g, dtype=torch.float64) * sharp).softmax(1)


def test_pool_then_upsample_is_identity_on_constant_cells():
    """Hard centre associations: pooling gives each cell's mean, upsampling paints it back."""
    h, w, cell = 4, 3, 16
    cells = torch.randn(1, 2, h, w, dtype=torch.float64)
    feat = cells.repeat_interleave(cell, 2).repeat_interleave(cell, 3)
    q = one_hot_assoc(np.full((h * cell, w * cell), 4))
    pooled = pool_cells(feat, q, cell)  # exact up to the reference's 1e-8 added to the mean weight
    torch.testing.assert_close(pooled, cells, rtol=1e-7, atol=0)
    torch.testing.assert_close(upsample_cells(pooled, q, cell), feat, rtol=1e-7, atol=0)


def test_pool_then_upsample_with_any_hard_assignment():
    """Each pixel assigned to one of its 9 neighbouring cells (inside the image): features that
    are constant on each resulting superpixel are reproduced exactly."""
    rng = np.random.default_rng(0)
    h, w, cell = 3, 4, 8
    H, W = h * cell, w * cell
    ys, xs = np.mgrid[:H, :W] // cell
    k = rng.integers(0, 9, (H, W))
    dy, dx = np.asarray(OFFSETS9).T
    ty, tx = ys + dy[k], xs + dx[k]
    inside = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
    k[~inside] = 4
    ty, tx = ys + dy[k], xs + dx[k]
    value = rng.normal(size=(h, w))
    feat = torch.as_tensor(value[ty, tx])[None, None]
    q = one_hot_assoc(k)
    pooled = pool_cells(feat, q, cell)
    assigned = np.zeros((h, w), bool)
    assigned[ty, tx] = True
    np.testing.assert_allclose(pooled[0, 0].numpy()[assigned], value[assigned], rtol=1e-7)
    torch.testing.assert_close(upsample_cells(pooled, q, cell), feat, rtol=1e-7, atol=0)


def naive_pool(feat, q, cell):
    """poolfeat by a loop over pixels and their 9 cells."""
    b, c, H, W = feat.shape
    h, w = H // cell, W // cell
    num, den = np.zeros((b, c, h, w)), np.zeros((b, 1, h, w))
    for y in range(H):
        for x in range(W):
            for k, (dy, dx) in enumerate(OFFSETS9):
                ty, tx = y // cell + dy, x // cell + dx
                if 0 <= ty < h and 0 <= tx < w:
                    num[:, :, ty, tx] += q[:, k, y, x, None] * feat[:, :, y, x]
                    den[:, :, ty, tx] += q[:, k, y, x, None]
    return num / (den + 1e-8 * cell * cell)


def test_pool_and_upsample_against_naive_loops():
    cell = 4
    q = random_assoc(2, 12, 16)
    feat = torch.randn(2, 3, 12, 16, dtype=torch.float64)
    np.testing.assert_allclose(pool_cells(feat, q, cell).numpy(), naive_pool(feat.numpy(), q.numpy(), cell),
                               atol=1e-12)
    cells = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    up = np.zeros((2, 3, 12, 16))
    for y in range(12):
        for x in range(16):
            for k, (dy, dx) in enumerate(OFFSETS9):
                ty, tx = y // cell + dy, x // cell + dx
                if 0 <= ty < 3 and 0 <= tx < 4:
                    up[:, :, y, x] += q[:, k, y, x, None].numpy() * cells[:, :, ty, tx].numpy()
    np.testing.assert_allclose(upsample_cells(cells, q, cell).numpy(), up, atol=1e-12)


def naive_affinity(q, cell):
    """A_d(s) = sum_p Q_p(s) Q_p(s + d) / sum_p Q_p(s), Q_p(t) = Q_pk for t = n(p) + o_k, 0 outside."""
    b, _, H, W = q.shape
    h, w = H // cell, W // cell
    num, den = np.zeros((b, 25, h, w)), np.zeros((b, h, w))
    for y in range(H):
        for x in range(W):
            to = {}
            for k, (dy, dx) in enumerate(OFFSETS9):
                ty, tx = y // cell + dy, x // cell + dx
                if 0 <= ty < h and 0 <= tx < w:
                    to[ty, tx] = q[:, k, y, x]
            for (sy, sx), qs in to.items():
                den[:, sy, sx] += qs
                for d, (dy, dx) in enumerate(OFFSETS25):
                    if (sy + dy, sx + dx) in to:
                        num[:, d, sy, sx] += qs * to[sy + dy, sx + dx]
    return num / (den[:, None] + 1e-8 * cell * cell)


def test_affinity_rows_against_naive_computation_and_row_sums():
    cell = 4
    q = random_assoc(2, 24, 20, seed=3)  # 6 x 5 cells
    a = cell_affinity(q, cell)
    assert a.shape == (2, 25, 6, 5)
    np.testing.assert_allclose(a.numpy(), naive_affinity(q.numpy(), cell), atol=1e-12)
    rows = a.sum(1)
    # row-stochastic where no associated pixel points outside (cells >= 2 from the border) ...
    torch.testing.assert_close(rows[:, 2:-2, 2:-2], torch.ones_like(rows[:, 2:-2, 2:-2]), rtol=0, atol=1e-7)
    # ... border rows lose the mass pointing outside (soft associations: strictly less)
    assert (rows[:, 0] < 1 - 1e-3).all() and (rows[:, :, -1] < 1 - 1e-3).all()
    # neighbours outside the image get no affinity
    assert (a[:, :5, 0] == 0).all() and (a[:, [4, 9, 14, 19, 24], :, -1] == 0).all()
    assert (a >= 0).all()


def test_affinity_of_hard_centre_associations_is_the_identity():
    q = one_hot_assoc(np.full((32, 48), 4))
    a = cell_affinity(q, 16)
    expect = torch.zeros_like(a)
    expect[:, 12] = 1
    torch.testing.assert_close(a, expect, rtol=0, atol=1e-6)


def test_walk_on_a_small_cell_graph():
    """Three cells in a row, hand-made affinities: x = [1, 0, 0] walks to [.5, .25, 0], then
    [.375, .25, .125]."""
    a = torch.zeros(1, 25, 1, 3, dtype=torch.float64)
    left, centre, right = 11, 12, 13
    a[0, centre, 0] = torch.tensor([0.5, 0.5, 0.5])
    a[0, right, 0, 0], a[0, left, 0, 1], a[0, right, 0, 1], a[0, left, 0, 2] = 0.5, 0.25, 0.25, 0.5
    x = torch.tensor([[[[1.0, 0.0, 0.0]]]], dtype=torch.float64)
    torch.testing.assert_close(walk_cells(x, a, 1), torch.tensor([[[[0.5, 0.25, 0.0]]]], dtype=torch.float64))
    torch.testing.assert_close(walk_cells(x, a, 2), torch.tensor([[[[0.375, 0.25, 0.125]]]], dtype=torch.float64))
    assert torch.equal(walk_cells(x, a, 0), x)


def test_walk_with_learnt_affinities_matches_explicit_products():
    """x <- A x by a loop over cells and offsets, several steps, several channels."""
    q = random_assoc(1, 20, 24, seed=5)
    a = cell_affinity(q, 4)  # 5 x 6 cells
    x = torch.rand(1, 2, 5, 6, dtype=torch.float64)
    ref = x.numpy().copy()
    an = a.numpy()
    for _ in range(3):
        nxt = np.zeros_like(ref)
        for sy in range(5):
            for sx in range(6):
                for d, (dy, dx) in enumerate(OFFSETS25):
                    ty, tx = sy + dy, sx + dx
                    if 0 <= ty < 5 and 0 <= tx < 6:
                        nxt[0, :, sy, sx] += an[0, d, sy, sx] * ref[0, :, ty, tx]
        ref = nxt
    np.testing.assert_allclose(walk_cells(x, a, 3).numpy(), ref, atol=1e-12)


def test_scatter_reconstruction_against_naive_loop():
    """Source cell n sends w_k(n) v(n) to n - o_k; what leaves the grid is lost."""
    g = torch.Generator().manual_seed(1)
    v = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    wts = torch.randn(2, 9, 4, 5, generator=g, dtype=torch.float64).softmax(1)
    out = np.zeros(v.shape)
    for ny in range(4):
        for nx in range(5):
            for k, (dy, dx) in enumerate(OFFSETS9):
                ty, tx = ny - dy, nx - dx
                if 0 <= ty < 4 and 0 <= tx < 5:
                    out[:, :, ty, tx] += wts[:, k, ny, nx, None].numpy() * v[:, :, ny, nx].numpy()
    np.testing.assert_allclose(scatter_cells(v, wts).numpy(), out, atol=1e-12)
    # mass is conserved when nothing is sent outside (weights only towards interior targets)
    inner = torch.zeros(1, 9, 4, 5, dtype=torch.float64)
    inner[:, 4] = 1.0
    total = scatter_cells(torch.ones(1, 1, 4, 5, dtype=torch.float64), inner).sum()
    assert total.item() == pytest.approx(20.0)


def test_neighbours_layout_and_fill():
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    nb = neighbours(x, 1)
    assert nb.shape == (1, 1, 9, 2, 3)
    assert nb[0, 0, :, 0, 0].tolist() == [0, 0, 0, 0, 0, 1, 0, 3, 4]  # TL, T, TR, L, C, R, BL, B, BR of cell (0, 0)
    assert neighbours(x, 1, fill=-1.0)[0, 0, 0, 0, 0].item() == -1.0


def test_sizes_must_be_multiples_of_the_cell():
    with pytest.raises(ValueError, match="multiple of the cell"):
        pool_cells(torch.zeros(1, 1, 20, 32), torch.zeros(1, 9, 20, 32), 16)
