"""Pixel pairs within a radius on the stride-4 grid, and affinities from a class-boundary map.

Geometry (IRN ``misc/indexing.py``, psa ``get_indices_of_pairs``): the neighbours of a pixel are
the half-plane offsets ``d = (dy, dx)`` with ``dy > 0 or (dy == 0 and dx > 0)`` and
``dy^2 + dx^2 < radius^2`` (34 offsets for radius 5, 150 for radius 10), so every unordered
pair is listed once. The affinity of a pair is ``1 - max`` of the boundary map over the cells
of its path: the cells of the pair's bounding box whose distance to the line through both
ends is below 1 (both ends included).

- :class:`PairIndex` (training, a fixed crop): sources are the pixels whose every neighbour is
  inside the grid (IRN's cropped source window ``[0, H - r + 1) x [r - 1, W - r + 1)``).
- :func:`grid_affinities` (inference): every in-grid pair of the whole map, as one (H, W) map
  per offset; pairs that leave the grid get affinity 0 (IRN pads the boundary map with 1).

See docs/methods/affinitynet.md.
"""

import numpy as np
import torch

from ..errors import ConfigError


def search_offsets(radius):
    """The half-plane neighbour offsets ``[(dy, dx), ...]`` with ``dy^2 + dx^2 < radius^2``."""
    if int(radius) != radius or radius < 2:
        raise ConfigError(f"pair radius must be an integer >= 2, got {radius}")
    r = int(radius)
    offsets = [(0, dx) for dx in range(1, r)]
    offsets += [(dy, dx) for dy in range(1, r) for dx in range(-r + 1, r) if dy * dy + dx * dx < r * r]
    return offsets


def path_cells(dy, dx):
    """Cells ``(y, x)`` (relative to the source) on the path from ``(0, 0)`` to ``(dy, dx)``."""
    n2 = dy * dy + dx * dx
    cells = [(y, x)
             for y in range(min(0, dy), max(0, dy) + 1)
             for x in range(min(0, dx), max(0, dx) + 1)
             if (dy * x - dx * y) ** 2 < n2]
    return cells


def sorted_offsets(radius):
    """``search_offsets`` stably sorted by path length (lets paths of one length be batched)."""
    offsets = search_offsets(radius)
    return sorted(offsets, key=lambda d: len(path_cells(*d)))


class PairIndex:
    """Flat indices of the source pixels, their neighbours and the path cells on a (H, W) grid.

    ``offsets`` (D, 2) lists the neighbour offsets (sorted by path length), ``src`` (S,) the
    flat source indices, ``dst`` (D, S) the flat neighbour of each source per offset, and
    ``groups`` a list of (n_L, L, S) int64 arrays: the path cells of the offsets of length L.
    """

    def __init__(self, radius, size):
        h, w = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
        rf = int(radius) - 1
        ch, cw = h - rf, w - 2 * rf
        if ch <= 0 or cw <= 0:
            raise ConfigError(f"grid {h}x{w} is too small for pair radius {radius}",
                              fix="use a larger crop or a smaller radius")
        self.radius, self.size = int(radius), (h, w)
        self.offsets = np.asarray(sorted_offsets(radius), dtype=np.int64)
        full = np.arange(h * w, dtype=np.int64).reshape(h, w)
        self.src = full[:ch, rf:rf + cw].reshape(-1)

        def window(dy, dx):
            return full[dy:dy + ch, rf + dx:rf + dx + cw].reshape(-1)

        self.dst = np.stack([window(dy, dx) for dy, dx in self.offsets])
        by_length = {}
        for dy, dx in self.offsets:
            cells = path_cells(int(dy), int(dx))
            by_length.setdefault(len(cells), []).append(np.stack([window(y, x) for y, x in cells]))
        self.groups = [np.stack(v) for _, v in sorted(by_length.items())]

    @property
    def num_pairs(self):
        return self.dst.size

    def to_affinity(self, edge):
        """Affinities (B, D, S) = 1 - max of ``edge`` (B, H, W) or (B, 1, H, W) over each pair's path.

        The path maximum is located without gradient and then read with one gather, so the
        backward pass scatters (B, D, S) values instead of every path cell: the same values
        and, barring exact ties between path cells, the same gradient as ``amax``.
        """
        b = edge.shape[0]
        flat = edge.reshape(b, -1)
        if flat.shape[1] != self.size[0] * self.size[1]:
            raise ValueError(f"edge map has {flat.shape[1]} cells, the pair index expects {self.size}")
        with torch.no_grad():
            chosen = []
            for g in self.groups:
                idx = torch.as_tensor(g, device=flat.device).transpose(1, 2).contiguous()  # (n, S, L)
                vals = flat.index_select(1, idx.reshape(-1)).view(b, *idx.shape)
                arg = vals.argmax(dim=3, keepdim=True)
                chosen.append(idx.unsqueeze(0).expand(b, -1, -1, -1).gather(3, arg).squeeze(3))
            chosen = torch.cat(chosen, dim=1)
        return 1.0 - flat.gather(1, chosen.reshape(b, -1)).view(chosen.shape)

    def pair_labels(self, mask):
        """(bg_pos, fg_pos, neg) float (B, D, S) pair labels from a (B, H, W) mask on the grid.

        A pair is valid when neither end is 255; positive when both ends share a label
        (background positive for label 0), negative when they differ (IRN).
        """
        flat = mask.reshape(mask.shape[0], -1).long()
        src = flat.index_select(1, torch.as_tensor(self.src, device=flat.device)).unsqueeze(1)
        dst_idx = torch.as_tensor(self.dst, device=flat.device)
        dst = flat.index_select(1, dst_idx.reshape(-1)).view(flat.shape[0], *dst_idx.shape)
        valid = (src != 255) & (dst != 255)
        equal = src == dst
        pos = equal & valid
        bg_pos = (pos & (src == 0)).float()
        fg_pos = (pos & (src > 0)).float()
        neg = (~equal & valid).float()
        return bg_pos, fg_pos, neg


def grid_affinities(edge, radius):
    """Per-offset affinity maps (B, D, H, W) for every in-grid pair of ``edge`` (B, H, W) in [0, 1].

    ``aff[b, i, y, x]`` is the affinity between ``(y, x)`` and ``(y, x) + offsets[i]``: 1 minus
    the largest boundary value on their path, 0 where the neighbour is outside the grid.
    Returns ``(aff, offsets)`` with ``offsets`` the list of :func:`search_offsets`.
    """
    if edge.dim() == 4:
        edge = edge[:, 0]
    b, h, w = edge.shape
    rf = int(radius) - 1
    padded = torch.nn.functional.pad(edge, (rf, rf, 0, rf), value=1.0)
    offsets = search_offsets(radius)
    maps = []
    for dy, dx in offsets:
        top = None
        for y, x in path_cells(dy, dx):
            cell = padded[:, y:y + h, rf + x:rf + x + w]
            top = cell if top is None else torch.maximum(top, cell)
        maps.append(1.0 - top)
    return torch.stack(maps, dim=1), offsets
