"""CAM files -> label maps at a background threshold, and the threshold sweep.

A background channel of constant value ``t`` is put in front of the foreground CAMs and the
argmax is taken, as in the PuzzleCAM / P-NOC evaluators. ``np.argmax`` returns the first
maximum, so background wins ties: a pixel is foreground only where ``max_c cam_c > t``
(compared in float32, the CAMs' dtype once loaded, as the references' ``np.pad`` does).
Since the foreground argmax and the foreground maximum do not depend on ``t``, the confusion
matrices of all thresholds come out of ONE histogram per image (see :func:`sweep_confusions`).

See docs/methods/evaluation.md.
"""

import cv2
import numpy as np

from ..errors import ConfigError
from .confusion import as_uint8, histogram, lookup_tables

DEFAULT_THRESHOLDS = "0.05:0.80:0.05"


def parse_thresholds(spec):
    """``"a:b:step"`` (``b`` included) or ``"t"`` or ``"t1,t2,..."`` -> sorted float list."""
    spec = str(spec).strip()
    try:
        if ":" in spec:
            a, b, step = (float(x) for x in spec.split(":"))
            if step <= 0 or b < a:
                raise ValueError
            n = int(np.floor((b - a) / step + 1e-6)) + 1
            values = [round(a + i * step, 10) for i in range(n)]
        else:
            values = [float(x) for x in spec.split(",") if x.strip()]
        if not values:
            raise ValueError
    except ValueError:
        raise ConfigError(f"bad threshold list {spec!r}",
                          fix="use a:b:step (b included), e.g. 0.05:0.80:0.05, or t1,t2,...") from None
    return sorted(set(values))


def cam_class_ids(keys, num_channels):
    """Label-map class ids of the CAM channels.

    Our files store 0-based foreground indices (class id = key + 1). P-NOC's released ``.npy``
    files store ``[0, c1 + 1, c2 + 1, ...]``: background included, already shifted; they are
    recognised by having one key more than channels, starting with 0.
    """
    keys = np.asarray(keys, dtype=np.int64).ravel()
    if len(keys) == num_channels + 1 and (num_channels == 0 or keys[0] == 0):
        return keys[1:]
    if len(keys) != num_channels:
        raise ValueError(f"{len(keys)} keys for {num_channels} CAM channels")
    return keys + 1


def _fg_argmax(hr_cam, class_ids):
    """Foreground label (class id of the strongest channel) and the max foreground value.

    Equals ``class_ids[hr_cam.argmax(0)]`` (first maximum wins) but runs channel by channel,
    which is several times faster than numpy's strided argmax over axis 0.
    """
    hr_cam = np.asarray(hr_cam, dtype=np.float32)
    shape = hr_cam.shape[1:]
    if hr_cam.shape[0] == 0:
        return np.zeros(shape, np.uint8), np.full(shape, -np.inf, np.float32)
    labels = np.full(shape, class_ids[0], np.uint8)
    top = hr_cam[0].copy()
    for channel, class_id in zip(hr_cam[1:], class_ids[1:]):
        # branch-free select in wrap-around uint8 arithmetic: labels += better * (id - labels)
        step = np.subtract(np.uint8(class_id), labels)
        np.multiply(step, channel > top, out=step)
        labels += step
        np.maximum(top, channel, out=top)
    return labels, top


def cam_to_labels(cam, threshold=None):
    """Label map (uint8) of a loaded CAM dict (``keys``, ``hr_cam``) at one threshold, or, when
    the file stores one (``hr_cam_bg``), against its background map (the threshold is unused)."""
    hr = np.asarray(cam["hr_cam"], dtype=np.float32)
    labels, top = _fg_argmax(hr, cam_class_ids(cam["keys"], hr.shape[0]))
    bg = cam.get("hr_cam_bg")
    if bg is None and threshold is None:
        raise ValueError("the CAM file stores no background map: a threshold is needed")
    labels[top <= (np.float32(threshold) if bg is None else np.asarray(bg, np.float32))] = 0
    return labels


def sweep_confusions(gt, cam, thresholds, num_classes):
    """Confusion matrices ``(T, K, K + 1)`` of one image for every threshold, in one pass.

    ``thresholds`` must be sorted ascending. Pixel with foreground maximum m is foreground for
    exactly the thresholds t < m; n(m) = #{t < m} splits the thresholds, so a histogram over
    (gt, foreground label, n) followed by cumulative sums gives every matrix.
    """
    ts = np.asarray(thresholds, dtype=np.float32)
    if np.any(np.diff(ts) <= 0):
        raise ValueError("thresholds must be strictly increasing")
    hr = np.asarray(cam["hr_cam"], dtype=np.float32)
    gt = as_uint8(gt, "ground truth")
    if hr.shape[1:] != gt.shape:
        raise ValueError(f"hr_cam size {hr.shape[1:]} differs from ground-truth size {gt.shape}")
    class_ids = cam_class_ids(cam["keys"], hr.shape[0])
    if class_ids.size and (class_ids.min() < 1 or class_ids.max() >= num_classes):
        raise ValueError(f"CAM keys name classes {sorted(class_ids.tolist())} but the dataset has "
                         f"foreground classes 1..{num_classes - 1}")
    labels, top = _fg_argmax(hr, class_ids)
    n_t = len(ts)
    if n_t > 254:
        raise ValueError("at most 254 thresholds per sweep")
    level = np.zeros(gt.shape, np.uint8)  # n(m) = #{t < m}
    for t in ts:
        np.add(level, top > t, out=level, casting="unsafe")
    k, k1 = num_classes, num_classes + 1
    rows = k + 2
    gt_lut, pred_lut = lookup_tables(num_classes)  # gt_lut is pre-multiplied by K + 1
    pair = cv2.add(cv2.LUT(np.ascontiguousarray(gt), gt_lut), cv2.LUT(labels, pred_lut))
    index = pair.astype(np.int32) * (n_t + 1) + level
    length = rows * k1 * (n_t + 1)
    if length <= 65536:
        hist = histogram(index.astype(np.uint16), length)
    else:
        hist = np.bincount(index.ravel(), minlength=length)
    hist = hist.reshape(rows, k1, n_t + 1)
    if hist[k + 1].any():
        raise ValueError(f"ground truth holds values that are neither a class (0..{k - 1}) nor 255")
    hist = hist[:k]
    # fg at threshold j = pixels with level > j: reverse cumulative sum over levels
    above = np.cumsum(hist[..., ::-1], axis=-1)[..., ::-1]  # above[..., n] = sum over n' >= n
    conf = np.moveaxis(above[..., 1:], -1, 0).copy()  # (T, K, K+1)
    below = np.cumsum(hist.sum(axis=1), axis=-1)[:, :n_t]  # (K, T): background, level <= j
    conf[:, :, 0] += below.T
    return conf
