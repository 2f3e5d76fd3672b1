"""Puzzle-CAM (``--method puzzle``): CAMs of 2x2 tiles, stitched, must match the full image's.

Loss (Puzzle-CAM's ``cl_pcl_re`` with ``re_loss_option=masking`` on raw CAMs, as the reference
defaults): ``MLSM(GAP(A), y~) + MLSM(GAP(A_m), y~) + alpha * mean(|A - A_m| * y)``, where
``A_m = stitch(CAMs of tile(x))`` and ``alpha = min(alpha_max * step / (max_step * schedule),
alpha_max)`` (0 -> 4 over the first half of training by default).

See docs/methods/puzzle.md.
"""

import math

import torch

from ..engine import Option
from ..errors import ConfigError
from .base import METHODS
from .losses import gap2d, masked_l1, mlsm
from .vanilla import VanillaCAM


def tile(x, n=2):
    """Cut (B, C, H, W) into n x n tiles -> (n*n*B, C, H/n, W/n).

    Tiles are ordered row-major (top-left, top-right, bottom-left, bottom-right for n = 2); tile
    k of every image occupies rows ``k*B .. (k+1)*B`` of the output.
    """
    _, _, h, w = x.shape
    if h % n or w % n:
        raise ValueError(f"Puzzle tiling needs H and W divisible by {n}, got {h}x{w}")
    th, tw = h // n, w // n
    return torch.cat([x[:, :, i * th:(i + 1) * th, j * tw:(j + 1) * tw] for i in range(n) for j in range(n)])


def stitch(tiles, n=2):
    """Inverse of :func:`tile`: (n*n*B, C, h, w) -> (B, C, n*h, n*w)."""
    if tiles.shape[0] % (n * n):
        raise ValueError(f"cannot stitch {tiles.shape[0]} tiles into {n}x{n} puzzles")
    parts = tiles.split(tiles.shape[0] // (n * n))
    return torch.cat([torch.cat(parts[i * n:(i + 1) * n], dim=3) for i in range(n)], dim=2)


def ramp(step, max_step, value, schedule):
    """``min(value * step / (max_step * schedule), value)``; ``value`` at once when ``schedule`` is 0."""
    if schedule <= 0:
        return value
    return min(value * step / (max_step * schedule), value)


@METHODS.register("puzzle")
class PuzzleCAM(VanillaCAM):
    """Puzzle-CAM: the classifier of ``cam`` plus the tiled-image terms (options below)."""

    name = "puzzle"
    options = {
        "num_pieces": Option(4, "tiles per image, a square >= 4 (4 = 2x2)"),
        "alpha": Option(4.0, "final weight of the reconstruction L1 between full and stitched CAMs"),
        "alpha_schedule": Option(0.5, "fraction of training over which alpha ramps up from 0 (0: at once)"),
    }

    def __init__(self, cfg, num_classes):
        super().__init__(cfg, num_classes)
        pieces = int(self.opts["num_pieces"])
        self.grid = math.isqrt(pieces)
        if self.grid ** 2 != pieces or pieces < 4:
            raise ConfigError(f"method.num_pieces={pieces} must be a square >= 4 (4 = 2x2 tiles)")
        self.alpha = float(self.opts["alpha"])
        self.alpha_schedule = float(self.opts["alpha_schedule"])

    def alpha_at(self, ctx):
        return ramp(ctx.step, ctx.max_step, self.alpha, self.alpha_schedule)

    def puzzle_terms(self, images, cams, labels, targets):
        """Puzzle losses given the full image's raw ``cams``: ``p_cls`` (MLSM of the stitched
        CAMs' GAP against ``targets``) and ``re`` (L1 between full and stitched CAMs on the
        classes present in the multi-hot ``labels``). Also returns the stitched CAMs ``merged``."""
        _, tiled = self.net(tile(images, self.grid))
        merged = stitch(tiled, self.grid)
        return {"p_cls": mlsm(gap2d(merged), targets), "re": masked_l1(cams, merged, labels), "merged": merged}

    def training_step(self, batch, ctx):
        images, labels = batch["image"], batch["label"]
        targets = self.smooth(labels)
        logits, cams = self.net(images)
        cls = mlsm(logits, targets)
        terms = self.puzzle_terms(images, cams, labels, targets)
        alpha = self.alpha_at(ctx)
        loss = cls + terms["p_cls"] + alpha * terms["re"]
        return {"loss": loss, "cls": cls.detach(), "p_cls": terms["p_cls"].detach(), "re": terms["re"].detach(),
                "alpha": alpha}
