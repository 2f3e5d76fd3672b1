"""Pseudo masks from class scores: background padding, argmax, key mapping, ignore.

Scores are the ``K`` channels of the classes present in an image (CAMs, random-walk output),
``keys`` their 0-based foreground class indices. The mask value of channel ``i`` is
``keys[i] + 1``; background is 0 and ignore is 255 (CONTRIBUTING.md). The background channel
is a constant threshold, psa's ``(1 - max)^alpha``, or the background map a method stored in
its CAM files (``hr_cam_bg``).

See docs/methods/pseudo-masks.md.
"""

from pathlib import Path

import numpy as np

from ..errors import DataError

IGNORE = 255


def foreground_keys(keys, num_channels, path=None):
    """0-based foreground keys for ``num_channels`` score channels.

    P-NOC's released ``.npy`` files store ``[0, c1 + 1, ...]`` (background first, shifted);
    those are converted, our ``.npz`` keys pass through.
    """
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)
    if keys.size == num_channels + 1 and keys[0] == 0:
        keys = keys[1:] - 1
    if keys.size != num_channels:
        raise DataError(f"{keys.size} keys for {num_channels} score channels", path=path,
                        fix="re-run CAM inference; each channel needs one class key")
    return keys


def constant_background(scores, value):
    """A (1, H, W) background channel of constant ``value`` (IRN / P-NOC threshold padding)."""
    return np.full((1,) + np.shape(scores)[1:], value, dtype=np.float32)


def power_background(scores, alpha):
    """psa's background channel ``(1 - max_c scores)^alpha`` as (1, H, W)."""
    scores = np.asarray(scores, dtype=np.float32)
    top = scores.max(0, keepdims=True) if scores.shape[0] else np.zeros((1,) + scores.shape[1:], np.float32)
    return np.power(np.clip(1.0 - top, 0.0, None), alpha).astype(np.float32)


def pad_background(scores, threshold=None, alpha=None, background=None):
    """Prepend a background channel: constant ``threshold``, ``(1 - max)^alpha`` or a given
    ``background`` map (H, W); (K+1, H, W)."""
    if sum(v is not None for v in (threshold, alpha, background)) != 1:
        raise ValueError("give exactly one of threshold (constant), alpha (power) or background (a map)")
    scores = np.asarray(scores, dtype=np.float32)
    if background is not None:
        bg = np.asarray(background, dtype=np.float32)
        if bg.shape != scores.shape[1:]:
            raise ValueError(f"background map {bg.shape} does not match the scores {scores.shape[1:]}")
        bg = bg[None]
    else:
        bg = constant_background(scores, threshold) if alpha is None else power_background(scores, alpha)
    return np.concatenate([bg, scores], axis=0)


def index_to_mask(index, keys):
    """Map channel indices of a background-padded score map (0 = bg, i = keys[i-1]) to mask values."""
    lut = np.concatenate([[0], np.asarray(keys, dtype=np.int64) + 1])
    if lut.max() >= IGNORE:
        raise ValueError("class index too large for a uint8 mask")
    return lut[index].astype(np.uint8)


def argmax_mask(scores, keys, threshold=None, alpha=None):
    """Pseudo mask (H, W) uint8: pad background, argmax over channels, map through ``keys``."""
    padded = pad_background(scores, threshold=threshold, alpha=alpha)
    return index_to_mask(padded.argmax(0), keys)


def set_ignore(mask, where):
    """Copy of ``mask`` with ``where`` (bool, same shape) set to 255."""
    out = np.array(mask, dtype=np.uint8, copy=True)
    out[np.asarray(where, dtype=bool)] = IGNORE
    return out


def pseudo_mask_job(state, item):
    """Process-pool job: optional CRF, then the pseudo-mask PNG of one image.

    ``state``: ``dataset`` (no transform; images for the CRF), ``out_dir``, ``crf`` (None or
    CRF params); ``item``: ``(dataset index, index map (H, W) of a background-padded argmax,
    keys)``: the label CRF sees ``len(keys) + 1`` labels, as P-NOC's ``make_pseudo_labels.py``.
    With background-padded scores (K + 1, H, W) instead of the index map, the CRF runs on the
    scores (unary ``-log p``, AEFT's final CRF) and the mask is its argmax. Returns
    ``(id, fraction of foreground pixels)``.
    """
    from ..data.io import save_index_png
    from .crf import crf_from_labels, crf_from_probs

    index, index_map, keys = item
    ds = state["dataset"]
    image_id = ds.ids[index]
    if np.ndim(index_map) == 3:
        scores = index_map
        if state.get("crf") and len(keys):
            scores = crf_from_probs(ds[index]["image"], scores, state["crf"])
        index_map = np.asarray(scores).argmax(0)
    elif state.get("crf") and len(keys):
        index_map = crf_from_labels(ds[index]["image"], index_map, len(keys) + 1, state["crf"])
    mask = index_to_mask(index_map, keys)
    save_index_png(Path(state["out_dir"]) / f"{image_id}.png", mask)
    return image_id, float((mask > 0).mean())
