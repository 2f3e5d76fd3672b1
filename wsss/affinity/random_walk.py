"""Random walk on pixel affinities by repeated sparse products (never a dense hw x hw matrix).

The reference pipelines (psa ``infer_aff.py``, IRN ``misc/indexing.py``) build the dense
affinity matrix A (unit diagonal, symmetric, non-zero only for pairs within the radius), the
transition matrix ``T = A^beta / column sums`` (elementwise power), square it ``logt`` times and
multiply the CAMs from the left: ``rw = cam (K x N) @ T^(2^logt)``. That costs O(N^2) memory and
``logt`` dense N^3 products. Here ``T^T = rownorm(A^beta)`` (A is symmetric) is one CSR matrix with
at most ``2 D + 1`` entries per row, and ``rw^T = (T^T)^(2^logt) cam^T`` is computed by ``2^logt``
sparse-dense products: O(N D) memory, O(2^logt N D K) time, the same numbers up to rounding.
A batch of images is one block-diagonal matrix.

Presets (:data:`RW_PRESETS`; ``infer.preset`` of tools/infer_rw.py, the config's own ``infer``
keys override them). The psa-lineage presets walk a background channel ``(1 - max)^alpha``
(``bg_alpha``) with the classes and take the argmax (docs/methods/psa.md):

====== ==== ==== ====== ===== =============================================================
preset beta logt radius alpha source
====== ==== ==== ====== ===== =============================================================
irn    10   8    5      -     IRN run_sample.py (beta=10, exp_times=8), edge-masked CAMs
pnoc   10   8    5      -     P-NOC runners/3-rw.sh (RW_BETA=10, RW_EXP=8), IRN's inference
psa    8    8    5      16    psa infer_aff.py defaults (README "t=256")
icam   8    6    5      6     ICAM infer_aff.py defaults (no CRF)
aeft   8    6    5      19    AEFT infer_aff.py (--dup 19), then a 1-iteration dCRF with
                              psa's kernels on the walked scores (``crf_on: scores``)
====== ==== ==== ====== ===== =============================================================

See docs/methods/affinitynet.md and docs/methods/psa.md.
"""

import warnings

import torch

from ..registry import Registry
from .pairs import grid_affinities

RW_PRESETS = Registry("random-walk preset")
RW_PRESETS.register("irn")({"beta": 10, "logt": 8, "radius": 5})
RW_PRESETS.register("pnoc")({"beta": 10, "logt": 8, "radius": 5})
_PSA = {"radius": 5, "beta": 8, "mask_edge": False, "bg_threshold": None, "crf": None}
RW_PRESETS.register("psa")({**_PSA, "logt": 8, "bg_alpha": 16})
RW_PRESETS.register("icam")({**_PSA, "logt": 6, "bg_alpha": 6})
RW_PRESETS.register("aeft")({**_PSA, "logt": 6, "bg_alpha": 19, "crf": {"preset": "psa", "t": 1}, "crf_on": "scores"})


def _stencil(offsets, width):
    """All row offsets of the symmetric matrix (-d, 0, +d), sorted by flat displacement."""
    signed = [(-dy, -dx, i, True) for i, (dy, dx) in enumerate(offsets)]
    signed += [(0, 0, -1, False)] + [(dy, dx, i, False) for i, (dy, dx) in enumerate(offsets)]
    return sorted(signed, key=lambda e: e[0] * width + e[1])


def transition_matrix(aff, offsets, beta):
    """Block-diagonal CSR matrix ``T^T = rownorm(A^beta)`` of shape (B*H*W, B*H*W).

    ``aff`` (B, D, H, W): ``aff[b, i, y, x]`` is the affinity between ``(y, x)`` and
    ``(y, x) + offsets[i]`` (entries whose neighbour is outside the grid are ignored); the
    diagonal of A is 1. Nodes are numbered ``b * H * W + y * W + x``.
    """
    b, d, h, w = aff.shape
    if d != len(offsets):
        raise ValueError(f"{d} affinity maps for {len(offsets)} offsets")
    n = h * w
    wts = aff.clamp(min=0).pow(beta)
    ys = torch.arange(h, device=aff.device).view(h, 1)
    xs = torch.arange(w, device=aff.device).view(1, w)
    vals, valid, cols = [], [], []
    for ey, ex, i, mirrored in _stencil(offsets, w):
        inside = (ys + ey >= 0) & (ys + ey < h) & (xs + ex >= 0) & (xs + ex < w)
        if i < 0:
            v = torch.ones(b, h, w, dtype=wts.dtype, device=aff.device)
        elif mirrored:  # entry (q, q - d) holds the affinity stored at the pair's source q - d
            v = torch.zeros(b, h, w, dtype=wts.dtype, device=aff.device)
            v[:, max(-ey, 0):h + min(-ey, 0), max(-ex, 0):w + min(-ex, 0)] = \
                wts[:, i, max(ey, 0):h + min(ey, 0), max(ex, 0):w + min(ex, 0)]
        else:
            v = wts[:, i]
        vals.append(v * inside)
        valid.append(inside.expand(b, h, w))
        cols.append((ys + ey) * w + xs + ex + torch.arange(b, device=aff.device).view(b, 1, 1) * n)
    vals = torch.stack(vals, -1).reshape(b * n, -1)
    valid = torch.stack(valid, -1).reshape(b * n, -1)
    cols = torch.stack([c.expand(b, h, w) for c in cols], -1).reshape(b * n, -1)
    vals = vals / vals.sum(1, keepdim=True)
    crow = torch.zeros(b * n + 1, dtype=torch.int64, device=aff.device)
    crow[1:] = valid.sum(1).cumsum(0)
    with warnings.catch_warnings():  # torch flags sparse CSR as "beta"; the products used here are stable
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols[valid], vals[valid], size=(b * n, b * n), check_invariants=False)


def random_walk(x, aff, offsets, beta, logt, dtype=torch.float64):
    """Propagate ``x`` (B, K, H, W) by ``T^(2^logt)`` (``x @ T`` per image), with sparse products.

    The products run in ``dtype``: in float32 a rounding of T's entries (~1e-7) grows linearly
    over the 2^logt steps (~1e-4 of the maximum at logt 8, like the dense float32 reference);
    float64 matches the dense formula to ~1e-12 for ~1.7x the time. Returns ``x.dtype``.
    """
    b, k, h, w = x.shape
    if aff.shape[0] != b or aff.shape[2:] != (h, w):
        raise ValueError(f"affinities {tuple(aff.shape)} do not match the maps {tuple(x.shape)}")
    if k == 0:
        return x.clone()
    tt = transition_matrix(aff.to(dtype), offsets, beta)
    v = x.to(dtype).permute(0, 2, 3, 1).reshape(b * h * w, k).contiguous()
    for _ in range(2 ** int(logt)):
        v = torch.sparse.mm(tt, v)
    return v.view(b, h, w, k).permute(0, 3, 1, 2).to(x.dtype).contiguous()


def propagate(cams, edge, beta=10, logt=8, radius=5, mask_edge=True, dtype=torch.float64):
    """IRN's random walk: ``cams * (1 - edge)`` walked on the boundary-map affinities.

    ``cams`` (B, K, H, W) and ``edge`` (B, H, W) in [0, 1] on the same (stride-4) grid.
    ``mask_edge=False`` walks the CAMs unmasked (psa-style inputs).
    """
    if edge.dim() == 4:
        edge = edge[:, 0]
    if cams.shape[-2:] != edge.shape[-2:]:
        raise ValueError(f"CAM grid {tuple(cams.shape[-2:])} != boundary grid {tuple(edge.shape[-2:])}")
    aff, offsets = grid_affinities(edge, radius)
    x = cams * (1.0 - edge.unsqueeze(1)) if mask_edge else cams
    return random_walk(x, aff, offsets, beta, logt, dtype=dtype)


def random_walk_batch(xs, affs, offsets, beta, logt, dtype=torch.float64):
    """Random walk of several images at once; returns one (K_i, h_i, w_i) tensor per image.

    ``xs`` (K_i, h_i, w_i) and ``affs`` (D, h_i, w_i) (pairs leaving the grid at 0, as
    :func:`wsss.affinity.pairs.grid_affinities` gives them) are per-image lists. Grids are
    padded to the largest with maps and affinities 0: a padded node has affinity 0 to every
    node, so each image's result is exactly its own walk.
    """
    if len(xs) != len(affs):
        raise ValueError(f"{len(xs)} maps for {len(affs)} affinity maps")
    for x, a in zip(xs, affs):
        if x.shape[-2:] != a.shape[-2:]:
            raise ValueError(f"map grid {tuple(x.shape[-2:])} != affinity grid {tuple(a.shape[-2:])}")
    h = max(a.shape[1] for a in affs)
    w = max(a.shape[2] for a in affs)
    k = max(x.shape[0] for x in xs)
    x = xs[0].new_zeros((len(xs), k, h, w))
    aff = affs[0].new_zeros((len(affs), len(offsets), h, w))
    for i, (c, a) in enumerate(zip(xs, affs)):
        x[i, :c.shape[0], :c.shape[1], :c.shape[2]] = c
        aff[i, :, :a.shape[1], :a.shape[2]] = a
    rw = random_walk(x, aff, offsets, beta, logt, dtype=dtype)
    return [rw[i, :c.shape[0], :c.shape[1], :c.shape[2]] for i, c in enumerate(xs)]


def with_background(cams, background=None, alpha=None):
    """``cams`` (K, h, w) with a background channel in front: ``background`` (h, w) when given
    (a method's stored map, ``cam_bg``), else psa's ``(1 - max_c cams)^alpha`` (1 where no class
    is present), else ``cams`` unchanged."""
    if background is not None:
        return torch.cat([torch.as_tensor(background).to(cams)[None], cams])
    if alpha is None:
        return cams
    top = cams.amax(0, keepdim=True) if len(cams) else cams.new_zeros((1,) + tuple(cams.shape[1:]))
    return torch.cat([(1 - top).clamp(min=0).pow(float(alpha)), cams])


def propagate_batch(cams, edges, beta=10, logt=8, radius=5, mask_edge=True, bg_alpha=None, dtype=torch.float64):
    """IRN's walk of several images at once; returns one (K_i [+1], h_i, w_i) tensor per image.

    ``cams`` (K_i, h_i, w_i) and ``edges`` (h_i, w_i) are per-image lists on the stride-4 grid
    (:func:`random_walk_batch` pads them). ``bg_alpha`` (psa) walks a background channel
    ``(1 - max_c cam)^alpha`` in front of the classes.
    """
    if len(cams) != len(edges):
        raise ValueError(f"{len(cams)} CAM maps for {len(edges)} boundary maps")
    for c, e in zip(cams, edges):
        if c.shape[-2:] != e.shape[-2:]:
            raise ValueError(f"CAM grid {tuple(c.shape[-2:])} != boundary grid {tuple(e.shape[-2:])}")
    if bg_alpha is not None:
        cams = [with_background(c, alpha=bg_alpha) for c in cams]
    xs, affs, offsets = [], [], None
    for c, e in zip(cams, edges):
        aff, offsets = grid_affinities(e[None], radius)
        xs.append(c * (1.0 - e) if mask_edge else c)
        affs.append(aff[0])
    return random_walk_batch(xs, affs, offsets, beta, logt, dtype=dtype)


def stack_images(images):
    """Images (3, h_i, w_i) at the top-left of one zero batch (B, 3, H, W); returns (batch, sizes)."""
    sizes = [tuple(im.shape[1:]) for im in images]
    batch = images[0].new_zeros((len(images), 3, max(s[0] for s in sizes), max(s[1] for s in sizes)))
    for i, (im, (h, w)) in enumerate(zip(images, sizes)):
        batch[i, :, :h, :w] = im
    return batch, sizes


def upsample_walk(rw, size, stride=4):
    """IRN: bilinear x``stride`` upsampling (align_corners False), crop to ``size``, divide by the max."""
    if rw.shape[0] == 0:
        return rw.new_zeros((0,) + tuple(size))
    up = torch.nn.functional.interpolate(rw[None].float(), scale_factor=stride, mode="bilinear",
                                         align_corners=False)[0, :, :size[0], :size[1]]
    return up / up.max().clamp(min=1e-12)
