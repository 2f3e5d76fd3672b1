"""ICAM's feature-similarity loss, exact in O(hw x chunk) memory, and a windowed approximation.

See docs/methods/icam.md, "Feature-similarity loss". For an image with per-pixel probability
vectors p_i (K channels) and colours x_i in [0, 1]^3 on an h x w grid:

    FS = -(1 / (N h w)) sum_b sum_i sum_j  k_ij * ||p_i - p_j||^2 * t_ij
    k_ij = exp(-r_ij^2 / (2 sigma^2)) / (2 pi sigma^2)       r_ij: grid distance of pixels i, j
    d_ij = clamp(|x_i - x_j|_1 / 3, 0, 1)
    t_ij = tanh(mu + log((d_ij + 1e-5) / (1 - d_ij + 1e-5)))

a SUM over all ordered pairs divided by N h w (ICAM's probutils.py:42-88). t_ij is about -1 for
pairs of similar colour (the loss pulls their predictions together) and +1 for dissimilar
pairs (it pushes them apart); mu moves the switch point to d = 1 / (1 + e^mu).

:func:`feature_similarity` computes it exactly without the (hw)^2 matrices of the reference:
with W_ij = k_ij t_ij symmetric,

    L = sum_ij W_ij ||p_i - p_j||^2 = sum_i [ r_i ||p_i||^2 + (W s)_i - 2 p_i . (W P)_i ],
    dL/dp_i = 4 (r_i p_i - (W P)_i),        r_i = sum_j W_ij,  s_j = ||p_j||^2,

so a pass over blocks of ``chunk`` rows of W gives the value AND the gradient; the gradient is
stored (N x hw x K) and returned by the backward, so neither pass keeps a block of W. Peak
memory is a few (chunk x hw) blocks. Double backward is not supported (nothing needs it).

``window=R`` keeps only the pairs with r_ij <= R (each offset of the disc is one shifted-array
pass, O(hw R^2) work). The kernel has unbounded support, so this is an approximation: since
||p_i - p_j||^2 <= 2 for probability vectors and |t| <= 1, its error is at most
``window_error_bound(sigma, R)`` = 2 x the lattice mass of the kernel beyond R
(:func:`kernel_tail_mass`; R = 4 sigma: about 2 e^-8).
"""

import math

import torch
import torch.nn.functional as F

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .pcm import float32_region

DEFAULT_CHUNK = 1024
_EPS = 1e-5


def image_colours(images, size, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """The normalised network input ``images`` (N, 3, H, W) resized to ``size`` (bilinear,
    align_corners=True) and de-normalised, as the colours of the loss (clamped to [0, 1] there)."""
    x = F.interpolate(images.detach().float(), size=tuple(size), mode="bilinear", align_corners=True)
    m = x.new_tensor(mean).view(1, 3, 1, 1)
    s = x.new_tensor(std).view(1, 3, 1, 1)
    return x * s + m


def colour_term(d, mu):
    """``t = tanh(mu + log((d + 1e-5) / (1 - d + 1e-5)))`` of colour distances ``d`` in [0, 1]."""
    return torch.tanh(mu + torch.log((d + _EPS) / (1.0 - d + _EPS)))


def gaussian_kernel(r2, sigma):
    """``exp(-r^2 / (2 sigma^2)) / (2 pi sigma^2)`` of squared grid distances."""
    return torch.exp(-0.5 * r2 / sigma ** 2) / (2.0 * math.pi * sigma ** 2)


def kernel_tail_mass(sigma, radius, extent=None):
    """Sum of the kernel over the integer offsets (a, b) with a^2 + b^2 > radius^2 (the lattice
    mass a radius-``radius`` window drops), over |a|, |b| <= ``extent`` (default: 12 sigma +
    radius, beyond which the rest is < 1e-30)."""
    extent = int(math.ceil(extent if extent is not None else 12 * sigma + radius))
    a = torch.arange(-extent, extent + 1, dtype=torch.float64)
    r2 = a[:, None] ** 2 + a[None, :] ** 2
    return float(gaussian_kernel(r2, sigma)[r2 > radius ** 2].sum())


def window_error_bound(sigma, radius):
    """Upper bound of ``|FS_exact - FS_window(radius)|`` for probability maps: 2 x the kernel's
    lattice tail beyond ``radius`` (||p_i - p_j||^2 <= 2, |t| <= 1)."""
    return 2.0 * kernel_tail_mass(sigma, radius)


def _flatten(colours, probs):
    n, k, h, w = probs.shape
    if colours.shape[0] != n or tuple(colours.shape[-2:]) != (h, w):
        raise ValueError(f"colours {tuple(colours.shape)} and probabilities {tuple(probs.shape)} must share "
                         "batch and grid")
    x = colours.detach().float().clamp(0.0, 1.0).flatten(2).transpose(1, 2)  # (N, hw, 3)
    p = probs.detach().float().flatten(2).transpose(1, 2)  # (N, hw, K)
    return x, p


def _grid(h, w, device):
    yy, xx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([yy.reshape(-1), xx.reshape(-1)], dim=1).float()  # (hw, 2)


def feature_similarity_dense(colours, probs, mu=2.5, sigma=5.0):
    """The formula as the reference computes it: every (hw)^2 matrix (``cdist`` of colours, of
    predictions, of positions) in memory, autograd through them. The oracle of the tests and the
    baseline of the memory benchmark; use :func:`feature_similarity`."""
    n, _, h, w = probs.shape
    x = colours.detach().float().clamp(0.0, 1.0).flatten(2).transpose(1, 2)
    p = probs.float().flatten(2).transpose(1, 2)
    pos = _grid(h, w, probs.device)[None]
    r2 = torch.cdist(pos, pos) ** 2
    d = (torch.cdist(x, x, p=1) / 3.0).clamp(0.0, 1.0)
    dy = torch.cdist(p, p, p=2) ** 2
    return -(gaussian_kernel(r2, sigma) * dy * colour_term(d, mu)).sum() / (n * h * w)


class _PrecomputedGradient(torch.autograd.Function):
    """``value`` as a function of ``probs`` whose gradient ``grad`` is already known."""

    @staticmethod
    def forward(ctx, probs, value, grad):
        ctx.save_for_backward(grad)
        return value.clone()

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        return grad_out * grad, None, None


def _exact(x, p, h, w, mu, sigma, chunk):
    """Sum over images of L and dL/dP (N, hw, K), by blocks of ``chunk`` rows."""
    n, hw, _ = p.shape
    pos = _grid(h, w, p.device)
    s = (p * p).sum(-1)  # (N, hw)
    total = p.new_zeros(())
    grad = torch.empty_like(p)
    for a in range(0, hw, chunk):
        b = min(hw, a + chunk)
        r2 = ((pos[a:b, None, :] - pos[None, :, :]) ** 2).sum(-1)  # (c, hw)
        d = (torch.cdist(x[:, a:b], x, p=1) / 3.0).clamp_(0.0, 1.0)  # (N, c, hw)
        wgt = colour_term(d, mu).mul_(gaussian_kernel(r2, sigma))
        rows = wgt.sum(-1)  # (N, c)
        wp = torch.bmm(wgt, p)  # (N, c, K)
        ws = torch.bmm(wgt, s[..., None])[..., 0]  # (N, c)
        pc = p[:, a:b]
        total = total + (rows * s[:, a:b] + ws - 2.0 * (pc * wp).sum(-1)).sum()
        grad[:, a:b] = 4.0 * (rows[..., None] * pc - wp)
    return total, grad


def window_offsets(radius):
    """Half of the offsets (dy, dx) with 0 < dy^2 + dx^2 <= radius^2: one of each +/- pair."""
    r = int(math.floor(radius))
    return [(dy, dx) for dy in range(0, r + 1) for dx in range(-r, r + 1)
            if (dy > 0 or dx > 0) and dy * dy + dx * dx <= radius * radius]


def _windowed(x, p, h, w, mu, sigma, radius):
    """Sum over images of L and dL/dP restricted to the pairs within ``radius``."""
    n, hw, k = p.shape
    pg = p.transpose(1, 2).reshape(n, k, h, w)
    xg = x.transpose(1, 2).reshape(n, 3, h, w)
    grad = torch.zeros_like(pg)
    total = p.new_zeros(())
    for dy, dx in window_offsets(radius):
        if dy >= h or abs(dx) >= w:
            continue
        # pixel i at (y, x) pairs with j = i + (dy, dx); both inside the grid
        ys, yd = slice(0, h - dy), slice(dy, h)
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        diff = pg[:, :, ys, xs] - pg[:, :, yd, xd]
        d = ((xg[:, :, ys, xs] - xg[:, :, yd, xd]).abs().sum(1) / 3.0).clamp_(0.0, 1.0)
        wgt = colour_term(d, mu) * float(gaussian_kernel(torch.tensor(float(dy * dy + dx * dx)), sigma))
        total = total + 2.0 * (wgt * (diff * diff).sum(1)).sum()  # (i, j) and (j, i)
        g = 4.0 * wgt[:, None] * diff
        grad[:, :, ys, xs] += g
        grad[:, :, yd, xd] -= g
    return total, grad.reshape(n, k, hw).transpose(1, 2)


def feature_similarity(colours, probs, mu=2.5, sigma=5.0, window=None, chunk=DEFAULT_CHUNK):
    """ICAM's feature-similarity loss (module docstring) of ``probs`` (N, K, h, w) given the
    pixel ``colours`` (N, 3, h, w) in [0, 1] (:func:`image_colours`): exact (all pairs, in
    blocks of ``chunk`` rows), or with ``window`` (a grid radius) the windowed approximation.
    Differentiable in ``probs``; computed in float32."""
    n, _, h, w = probs.shape
    with torch.no_grad(), float32_region(probs):
        x, p = _flatten(colours, probs)
        if window is None:
            total, grad = _exact(x, p, h, w, float(mu), float(sigma), max(1, int(chunk)))
        else:
            total, grad = _windowed(x, p, h, w, float(mu), float(sigma), float(window))
        scale = -1.0 / (n * h * w)
        value = total * scale
        grad = (grad * scale).transpose(1, 2).reshape(probs.shape).to(probs.dtype)
    if not probs.requires_grad:
        return value
    return _PrecomputedGradient.apply(probs, value, grad)


def image_feature_similarity(images, probs, mu=2.5, sigma=5.0, window=None, chunk=DEFAULT_CHUNK,
                             mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """FS of ``probs`` (N, K, h, w) against the colours of the normalised network input ``images``
    (N, 3, H, W) at their grid: ICAM's CAM loss (scale 1) and its DeepLab loss."""
    return feature_similarity(image_colours(images, probs.shape[-2:], mean, std), probs, mu, sigma, window, chunk)
