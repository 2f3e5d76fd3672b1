"""The sparse random walk against the dense formula of psa/IRN (T squared logt times, then applied)."""

import importlib.util
from pathlib import Path

import pytest
import torch

from wsss.affinity.pairs import grid_affinities, search_offsets
from wsss.affinity.random_walk import RW_PRESETS, propagate, random_walk, transition_matrix


def dense_affinity_loops(aff, offsets):
    """Brute force: A[p, q] for every pair of nodes by scanning the offsets; unit diagonal."""
    d, h, w = aff.shape
    n = h * w
    a = torch.eye(n, dtype=torch.float64)
    for i, (dy, dx) in enumerate(offsets):
        for y in range(h):
            for x in range(w):
                if 0 <= y + dy < h and 0 <= x + dx < w:
                    p, q = y * w + x, (y + dy) * w + x + dx
                    a[p, q] = a[q, p] = float(aff[i, y, x])
    return a


def dense_walk(x, aff, offsets, beta, logt):
    """The reference formula: T = A^beta / column sums, T <- T @ T logt times, x @ T."""
    k, h, w = x.shape
    t = dense_affinity_loops(aff, offsets).pow(beta)
    t = t / t.sum(0, keepdim=True)
    for _ in range(logt):
        t = t @ t
    return (x.reshape(k, -1).double() @ t).reshape(k, h, w)


def random_inputs(b=2, k=3, h=9, w=11, radius=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    offsets = search_offsets(radius)
    aff = torch.rand(b, len(offsets), h, w, generator=g)
    x = torch.rand(b, k, h, w, generator=g)
    return x, aff, offsets


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize("beta,logt", [(10, 8), (8, 8), (1, 3), (2.5, 5)])
def test_sparse_walk_equals_dense_formula(beta, logt):
    x, aff, offsets = random_inputs()
    out = random_walk(x, aff, offsets, beta, logt)
    assert out.shape == x.shape and out.dtype == x.dtype
    for b in range(x.shape[0]):
        assert rel(out[b], dense_walk(x[b], aff[b], offsets, beta, logt)) < 1e-4


def test_float64_walk_is_exact_and_float32_close():
    x, aff, offsets = random_inputs(b=1, k=2, h=8, w=8, radius=5, seed=3)
    ref = dense_walk(x[0], aff[0], offsets, 10, 8)
    assert rel(random_walk(x, aff, offsets, 10, 8)[0], ref) < 1e-6  # float64 products, float32 output
    assert rel(random_walk(x.double(), aff.double(), offsets, 10, 8)[0], ref) < 1e-10
    assert rel(random_walk(x, aff, offsets, 10, 5, dtype=torch.float32)[0],
               dense_walk(x[0], aff[0], offsets, 10, 5)) < 1e-4


def test_transition_matrix_is_the_transposed_column_normalised_power():
    x, aff, offsets = random_inputs(b=2, h=5, w=6, radius=3)
    tt = transition_matrix(aff.double(), offsets, 3.0).to_dense()
    n = 5 * 6
    for b in range(2):
        a = dense_affinity_loops(aff[b], offsets).pow(3.0)
        t = a / a.sum(0, keepdim=True)
        block = tt[b * n:(b + 1) * n, b * n:(b + 1) * n]
        assert torch.allclose(block, t.T, atol=1e-12)
    assert tt[:n, n:].abs().sum() == 0 and tt[n:, :n].abs().sum() == 0  # block diagonal


def test_batch_equals_images_one_by_one():
    x, aff, offsets = random_inputs(b=3, seed=5)
    together = random_walk(x, aff, offsets, 10, 6)
    for b in range(3):
        alone = random_walk(x[b:b + 1], aff[b:b + 1], offsets, 10, 6)
        assert torch.allclose(together[b:b + 1], alone, rtol=0, atol=1e-12)


def test_constant_map_is_a_fixed_point():
    # T's columns sum to one, so x @ T keeps a constant x
    _, aff, offsets = random_inputs(b=1, k=1, seed=7)
    x = torch.full((1, 2, 9, 11), 0.7)
    assert torch.allclose(random_walk(x, aff, offsets, 10, 8), x, atol=1e-6)


def test_boundary_wall_stops_propagation():
    h, w = 12, 12
    edge = torch.zeros(1, h, w)
    edge[0, :, 6] = 1.0  # a vertical class boundary
    cams = torch.zeros(1, 1, h, w)
    cams[0, 0, 5, 2] = 1.0
    rw = propagate(cams, edge, beta=10, logt=8, radius=5)[0, 0]
    assert (rw[:, 6:] == 0).all()  # nothing crosses (wall nodes keep their zero)
    assert (rw[:, :6] > 0).all()  # the seed spreads over its whole region


def test_dense_reference_of_the_benchmark_agrees():
    spec = importlib.util.spec_from_file_location(
        "rw_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "random_walk.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    x, aff, offsets = random_inputs(b=1, seed=11)
    assert rel(bench.reference_dense_walk(x[0].double(), aff[0].double(), offsets, 10, 8),
               dense_walk(x[0], aff[0], offsets, 10, 8)) < 1e-12
    cams, aff2, offs2 = bench.make_inputs(48, 2, 5)
    assert aff2.shape == (1, 34, 12, 12) and cams.shape == (1, 2, 12, 12)


def test_presets_cite_the_published_values():
    assert RW_PRESETS.get("irn") == {"beta": 10, "logt": 8, "radius": 5}
    walk = ("beta", "logt", "radius", "bg_alpha")
    assert {k: RW_PRESETS.get("psa")[k] for k in walk} == {"beta": 8, "logt": 8, "radius": 5, "bg_alpha": 16}
    assert {k: RW_PRESETS.get("icam")[k] for k in walk} == {"beta": 8, "logt": 6, "radius": 5, "bg_alpha": 6}
    assert {k: RW_PRESETS.get("aeft")[k] for k in walk} == {"beta": 8, "logt": 6, "radius": 5, "bg_alpha": 19}
    assert RW_PRESETS.get("aeft")["crf"] == {"preset": "psa", "t": 1} and RW_PRESETS.get("aeft")["crf_on"] == "scores"
    assert RW_PRESETS.get("psa")["crf"] is None and RW_PRESETS.get("psa")["bg_threshold"] is None


def test_no_channels_and_shape_mismatch():
    x, aff, offsets = random_inputs(b=1, k=0)
    assert random_walk(x, aff, offsets, 10, 8).shape == (1, 0, 9, 11)
    with pytest.raises(ValueError):
        random_walk(torch.rand(1, 2, 5, 5), aff, offsets, 10, 8)
    with pytest.raises(ValueError):
        propagate(torch.rand(1, 2, 5, 5), torch.rand(1, 6, 5), 10, 8)
    aff_maps, offs = grid_affinities(torch.rand(1, 5, 5), 3)
    with pytest.raises(ValueError):
        transition_matrix(aff_maps[:, :-1], offs, 10)
