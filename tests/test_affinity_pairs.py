"""Pair geometry of the affinity stage against brute-force enumeration."""

import numpy as np
import pytest
import torch

from wsss.affinity.pairs import PairIndex, grid_affinities, path_cells, search_offsets
from wsss.errors import ConfigError


def brute_offsets(r):
    return {(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
            if (dy > 0 or (dy == 0 and dx > 0)) and dy * dy + dx * dx < r * r}


def brute_path(dy, dx):
    """Cells of the bounding box whose centre lies closer than 1 to the line through both ends."""
    p, d = np.array([0.0, 0.0]), np.array([dy, dx], dtype=float)
    cells = set()
    for y in range(min(0, dy), max(0, dy) + 1):
        for x in range(min(0, dx), max(0, dx) + 1):
            v = np.array([y, x], dtype=float) - p
            dist = abs(d[0] * v[1] - d[1] * v[0]) / np.linalg.norm(d)
            if dist < 1 - 1e-12:
                cells.add((y, x))
    return cells


@pytest.mark.parametrize("r", [2, 3, 5, 10])
def test_offsets_match_brute_force(r):
    offs = search_offsets(r)
    assert len(offs) == len(set(offs))
    assert set(offs) == brute_offsets(r)


def test_offset_counts_of_the_references():
    assert len(search_offsets(5)) == 34  # psa / IRN inference radius
    assert len(search_offsets(10)) == 152  # IRN training radius: (305 lattice points - 1) / 2


def test_path_cells_hand_computed():
    assert sorted(path_cells(0, 3)) == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert sorted(path_cells(1, 2)) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert sorted(path_cells(2, 2)) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2)]
    assert sorted(path_cells(1, -1)) == [(0, -1), (0, 0), (1, -1), (1, 0)]


def test_path_cells_match_geometry_for_all_offsets():
    for dy, dx in search_offsets(10):
        cells = path_cells(dy, dx)
        assert set(cells) == brute_path(dy, dx)
        assert (0, 0) in cells and (dy, dx) in cells


@pytest.mark.parametrize("radius,size", [(3, (7, 9)), (5, (10, 12))])
def test_pair_index_matches_brute_force(radius, size):
    h, w = size
    pi = PairIndex(radius, size)
    got = {(int(s), int(d)) for row_dst in pi.dst for s, d in zip(pi.src, row_dst)}
    offs = brute_offsets(radius)
    want = set()
    for y in range(h):
        for x in range(w):
            if all(0 <= y + dy < h and 0 <= x + dx < w for dy, dx in offs):  # every neighbour in the grid
                want |= {(y * w + x, (y + dy) * w + x + dx) for dy, dx in offs}
    assert got == want
    assert pi.num_pairs == len(want)


def test_pair_index_affinity_is_one_minus_path_max():
    torch.manual_seed(0)
    h, w, r = 8, 10, 4
    pi = PairIndex(r, (h, w))
    edge = torch.rand(2, h, w)
    aff = pi.to_affinity(edge)
    assert aff.shape == (2, len(pi.offsets), pi.src.size)
    for b in range(2):
        for i, (dy, dx) in enumerate(pi.offsets):
            for j, s in enumerate(pi.src):
                y, x = divmod(int(s), w)
                top = max(edge[b, y + cy, x + cx].item() for cy, cx in brute_path(int(dy), int(dx)))
                assert aff[b, i, j].item() == pytest.approx(1 - top, abs=1e-7)


def test_pair_labels_hand_made():
    # radius 2 on a 2 x 3 grid: one source (0, 1), neighbours (0,2), (1,0), (1,1), (1,2)
    pi = PairIndex(2, (2, 3))
    assert pi.src.tolist() == [1]
    mask = torch.tensor([[[9, 0, 3], [255, 2, 0]],     # source background
                         [[9, 2, 2], [2, 255, 0]]])    # source class 2 (mask value)
    bg, fg, neg = pi.pair_labels(mask)
    by_dst = {int(d): i for i, d in enumerate(pi.dst[:, 0])}   # flat neighbour -> offset row
    expect = {  # flat dst: (bg_pos, fg_pos, neg) for image 0 and image 1
        2: ((0, 0, 1), (0, 1, 0)),
        3: ((0, 0, 0), (0, 1, 0)),
        4: ((0, 0, 1), (0, 0, 0)),
        5: ((1, 0, 0), (0, 0, 1)),
    }
    for dst, per_image in expect.items():
        for b, triple in enumerate(per_image):
            row = by_dst[dst]
            assert (bg[b, row, 0].item(), fg[b, row, 0].item(), neg[b, row, 0].item()) == triple


def test_grid_affinities_match_brute_force():
    torch.manual_seed(1)
    h, w, r = 7, 9, 3
    edge = torch.rand(1, h, w)
    aff, offs = grid_affinities(edge, r)
    assert aff.shape == (1, len(offs), h, w)
    for i, (dy, dx) in enumerate(offs):
        for y in range(h):
            for x in range(w):
                if not (0 <= y + dy < h and 0 <= x + dx < w):
                    assert aff[0, i, y, x] == 0
                    continue
                top = max(edge[0, y + cy, x + cx].item() for cy, cx in brute_path(dy, dx))
                assert aff[0, i, y, x].item() == pytest.approx(1 - top, abs=1e-7)


def test_bad_radius_and_small_grid_raise():
    with pytest.raises(ConfigError):
        search_offsets(1)
    with pytest.raises(ConfigError):
        PairIndex(10, (8, 8))


def test_pair_index_gradient_is_that_of_the_path_max():
    torch.manual_seed(2)
    h, w, r = 9, 11, 4
    pi = PairIndex(r, (h, w))
    edge = torch.rand(2, h, w, dtype=torch.float64, requires_grad=True)  # no ties in float64
    weights = torch.rand(2, len(pi.offsets), pi.src.size, dtype=torch.float64)
    (pi.to_affinity(edge) * weights).sum().backward()
    flat = edge.detach().reshape(2, -1).clone().requires_grad_(True)
    ref = torch.cat([1 - flat[:, torch.as_tensor(g).reshape(-1)].view(2, *g.shape).amax(2) for g in pi.groups], 1)
    (ref * weights).sum().backward()
    assert torch.allclose(edge.grad.reshape(2, -1), flat.grad)
