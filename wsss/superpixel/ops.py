"""Operations on pixel-superpixel associations (docs/methods/spcam.md, "Superpixel operations").

An association map ``Q`` (B, 9, H, W) gives each pixel a distribution over the 9 cells of the
regular ``cell`` x ``cell`` grid around its own (channel k = 3 (dy + 1) + (dx + 1): TL, T, TR,
L, C, R, BL, B, BR). H and W are multiples of ``cell``; cells outside the image hold zeros, so
association mass that points outside is lost. Everything here is a fixed number of tensor ops
(block einsums, ``fold``/``unfold``): no loop over the offsets.

- :func:`pool_cells` (SP-CAM's ``poolfeat``): ``cell(s) = sum_p Q_p(s) f_p / sum_p Q_p(s)``;
- :func:`upsample_cells` (``upfeat``): ``f_p = sum_k Q_pk cell(n(p) + o_k)``;
- :func:`cell_affinity` (ASAM, ``calc_affmat``): ``A_d(s) = sum_p Q_p(s) Q_p(s + d) / sum_p Q_p(s)``
  over the 5 x 5 offsets d (channel 5 (dy + 2) + (dx + 2));
- :func:`walk_cells` (``refine_with_affmat``): ``x(s) <- sum_d A_d(s) x(s + d)``;
- :func:`scatter_cells` (the DRM's reconstruction): each cell n sends ``w_k(n) z(n)`` to cell
  ``n - o_k``, i.e. ``out(s) = sum_k w_k(s + o_k) z(s + o_k)``;
- :func:`neighbours`: the values of the (2r+1)^2 neighbours of every cell, padded;
- :func:`hard_superpixels`: each pixel's most associated cell, as superpixel ids.
"""

import torch
import torch.nn.functional as F

#: (dy, dx) of the 9 association channels
OFFSETS9 = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
#: (dy, dx) of the 25 affinity channels
OFFSETS25 = tuple((dy, dx) for dy in range(-2, 3) for dx in range(-2, 3))
#: reference epsilon of the pooled weights (added to their per-cell mean)
POOL_EPS = 1e-8


def _blocks(x, cell):
    """(B, C, H, W) -> (B, C, h, cell, w, cell) view of the cell blocks."""
    b, c, hh, ww = x.shape
    if hh % cell or ww % cell:
        raise ValueError(f"map of {hh}x{ww} is not a multiple of the cell size {cell}")
    return x.reshape(b, c, hh // cell, cell, ww // cell, cell)


def _fold3(cols, size):
    """Scatter (B, C, 9, h, w) to cells: ``out[:, c, n + o_k] += cols[:, c, k, n]`` (zero outside)."""
    b, c, k, h, w = cols.shape
    return F.fold(cols.reshape(b, c * k, h * w), size, kernel_size=3, padding=1)


def neighbours(x, radius=1, fill=0.0):
    """Values of the (2 radius + 1)^2 neighbours of every cell: (B, C, K, h, w) from (B, C, h, w),
    channel k = (2r+1)(dy + r) + (dx + r); cells outside are ``fill``."""
    b, c, h, w = x.shape
    size = 2 * radius + 1
    if fill:
        x = F.pad(x, (radius,) * 4, value=fill)
        cols = F.unfold(x, size)
    else:
        cols = F.unfold(x, size, padding=radius)
    return cols.reshape(b, c, size * size, h, w)


def pool_cells(feat, assoc, cell=16, eps=POOL_EPS):
    """``poolfeat``: association-weighted mean of ``feat`` (B, C, H, W) per cell -> (B, C, h, w).

    Each pixel p of cell n gives ``Q_pk f_p`` and ``Q_pk`` to cell n + o_k; the result is their
    ratio, with ``eps`` added to the per-pixel mean of the weights (the reference's
    ``avg_pool(...) + 1e-8``)."""
    fb = _blocks(torch.cat([feat, torch.ones_like(feat[:, :1])], 1), cell)
    qb = _blocks(assoc, cell)
    sums = torch.einsum("bchiwj,bkhiwj->bckhw", fb, qb.to(fb.dtype))  # (B, C+1, 9, h, w)
    pooled = _fold3(sums, fb.shape[2:5:2])
    return pooled[:, :-1] / (pooled[:, -1:] + eps * cell * cell)


def upsample_cells(cells, assoc, cell=16):
    """``upfeat``: pixel values ``sum_k Q_pk cells(n(p) + o_k)`` (B, C, h*cell, w*cell) from
    cell values (B, C, h, w) (zeros outside the grid)."""
    b, c, h, w = cells.shape
    nb = neighbours(cells, 1)  # (B, C, 9, h, w)
    qb = _blocks(assoc, cell)
    if qb.shape[2] != h or qb.shape[4] != w:
        raise ValueError(f"{h}x{w} cells but the associations cover {qb.shape[2]}x{qb.shape[4]}")
    out = torch.einsum("bckhw,bkhiwj->bchiwj", nb, qb.to(nb.dtype))
    return out.reshape(b, c, h * cell, w * cell)


def _offset_index(device):
    """``D[a, b]`` = the 5x5 channel of offset ``o_b - o_a``."""
    o = torch.tensor(OFFSETS9, device=device)
    d = o[None, :, :] - o[:, None, :] + 2  # (9a, 9b, 2)
    return d[..., 0] * 5 + d[..., 1]


def cell_affinity(assoc, cell=16, eps=POOL_EPS):
    """ASAM: (B, 25, h, w) affinities of every cell to its 5x5 neighbours (channel
    ``5 (dy + 2) + (dx + 2)``), ``A_d(s) = sum_p Q_p(s) Q_p(s + d) / sum_p Q_p(s)``.

    A row sums to 1 when no pixel associated with the cell points outside the image (cells at
    least 2 from the border); border rows lose that mass (neighbours outside are 0)."""
    qb = _blocks(assoc, cell)
    b, _, h, _, w, _ = qb.shape
    pair = torch.einsum("bahiwj,bchiwj->bachw", qb, qb)  # (B, 9a, 9b, h, w): sum_p Q_pa Q_pb per cell
    index = _offset_index(assoc.device)[None, :, :, None, None].expand_as(pair)
    cols = pair.new_zeros(b, 9, 25, h, w).scatter_add_(2, index, pair)  # a -> (cell n + o_a, offset d)
    num = _fold3(cols.transpose(1, 2), (h, w))  # (B, 25, h, w)
    den = _fold3(qb.sum((3, 5))[:, None], (h, w))  # (B, 1, h, w): sum_p Q_p(s)
    inside = neighbours(assoc.new_ones(1, 1, h, w), 2)[:, 0]  # (1, 25, h, w): s + d in the image
    return num / (den + eps * cell * cell) * inside


def walk_cells(x, affinity, steps=1):
    """``steps`` applications of ``x(s) <- sum_d A_d(s) x(s + d)`` to cell maps (B, C, h, w)."""
    for _ in range(int(steps)):
        x = torch.einsum("bckhw,bkhw->bchw", neighbours(x, 2), affinity.to(x.dtype))
    return x


def scatter_cells(values, weights):
    """The DRM's per-cell scatter: ``out(s) = sum_k w_k(s + o_k) v(s + o_k)`` for values
    (B, C, h, w) and per-cell weights (B, 9, h, w) (each source cell n sends ``w_k(n) v(n)`` to
    cell ``n - o_k``; what leaves the grid is lost)."""
    sent = values[:, :, None] * weights[:, None].to(values.dtype)  # (B, C, 9, h, w)
    return _fold3(sent.flip(2), values.shape[2:])  # channel k goes to n - o_k = n + o_(8-k)


def hard_superpixels(assoc, cell=16):
    """Superpixel ids (B, H, W) int64: each pixel's most associated cell ``n(p) + o_k``
    (``row * w + col`` of the cell grid; an argmax pointing outside falls back to the own cell)."""
    b, _, hh, ww = assoc.shape
    h, w = hh // cell, ww // cell
    k = assoc.argmax(1)
    off = torch.tensor(OFFSETS9, device=assoc.device)[k]  # (B, H, W, 2)
    ys = torch.arange(hh, device=assoc.device)[:, None] // cell
    xs = torch.arange(ww, device=assoc.device)[None, :] // cell
    ty, tx = ys + off[..., 0], xs + off[..., 1]
    outside = (ty < 0) | (ty >= h) | (tx < 0) | (tx >= w)
    ty, tx = torch.where(outside, ys.expand_as(ty), ty), torch.where(outside, xs.expand_as(tx), tx)
    return ty * w + tx
