"""Dense CRF (Krähenbühl & Koltun) on ``pydensecrf2`` and named parameter presets.

Two unaries, as in the reference pipelines:

- :func:`crf_from_probs`: unary ``-log p`` from per-class scores (psa's ``crf_inference``; the
  scores need not sum to one, e.g. ``[(1 - max cam)^alpha, cams]``); returns the marginals Q.
- :func:`crf_from_labels`: unary from a label map trusted with probability ``gt_prob``
  (IRN / P-NOC ``crf_inference_label``, ``zero_unsure=False``); returns the refined label map.

Presets (:data:`CRF_PRESETS`; each key is a field of :class:`CRFParams`):

========== ==== ============== ===================== ======= ======================================
preset     t    gaussian       bilateral             gt_prob source
           iter sxy / compat   sxy / srgb / compat
========== ==== ============== ===================== ======= ======================================
irn        10   3 / 3          50 / 5 / 10           0.7     IRN misc/imutils.py, P-NOC affinity labels
psa        10   3 / 3          80 / 13 / 10          -       psa tool/imutils.py (alpha CRF on CAMs)
deeplab    10   1 / 3          67 / 3 / 4            0.7     DeepLab v2 (docs/methods/deeplab.md)
pnoc_rw    1    3 / 3          50 / 5 / 10           0.9     P-NOC runners/3-rw.sh pseudo masks
deeplabv1  1    3 / 3          32 / 13 / 10          -       DeepLab-v1 of SEAM / ICAM / CPN
                                                             (lib/utils/DenseCRF.py)
========== ==== ============== ===================== ======= ======================================

See docs/methods/pseudo-masks.md.
"""

import dataclasses

import numpy as np

from ..errors import DataError
from ..registry import Registry

CRF_PRESETS = Registry("CRF preset")


@dataclasses.dataclass(frozen=True)
class CRFParams:
    """Dense CRF settings: mean-field iterations, kernels, and the label-unary certainty."""

    t: int = 10
    gauss_sxy: float = 3.0
    gauss_compat: float = 3.0
    bi_sxy: float = 50.0
    bi_srgb: float = 5.0
    bi_compat: float = 10.0
    gt_prob: float = 0.7
    scale: float | None = None  # unary_from_softmax's certainty for probability unaries (None = as is)


CRF_PRESETS.register("irn")(CRFParams())
CRF_PRESETS.register("psa")(CRFParams(bi_sxy=80.0, bi_srgb=13.0))
CRF_PRESETS.register("deeplab")(CRFParams(gauss_sxy=1.0, gauss_compat=3.0, bi_sxy=67.0, bi_srgb=3.0, bi_compat=4.0))
CRF_PRESETS.register("pnoc_rw")(CRFParams(t=1, gt_prob=0.9))
CRF_PRESETS.register("deeplabv1")(CRFParams(t=1, bi_sxy=32.0, bi_srgb=13.0))


def crf_params(preset="irn", **overrides):
    """The :class:`CRFParams` of a named preset, with some fields replaced (``None`` = keep)."""
    params = CRF_PRESETS.get(preset)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(params, **overrides) if overrides else params


def _as_params(params):
    if isinstance(params, CRFParams):
        return params
    if isinstance(params, str):
        return crf_params(params)
    if isinstance(params, dict):
        params = dict(params)
        return crf_params(params.pop("preset", "irn"), **params)
    raise TypeError(f"CRF params must be a preset name, a dict or CRFParams, got {type(params).__name__}")


def _check_image(image, shape):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"CRF needs an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
    if image.shape[:2] != tuple(shape):
        raise DataError(f"CRF image is {image.shape[:2]} but the scores/labels are {tuple(shape)}",
                        fix="resize the CAMs/labels to the image size first")
    return np.require(image, requirements=["C", "W"])  # pydensecrf needs a writable buffer


def _inference(image, unary, n_labels, p):
    import pydensecrf.densecrf as dcrf  # deferred: only the CRF path needs the extension

    h, w = image.shape[:2]
    d = dcrf.DenseCRF2D(w, h, n_labels)
    d.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    d.addPairwiseGaussian(sxy=p.gauss_sxy, compat=p.gauss_compat)
    d.addPairwiseBilateral(sxy=p.bi_sxy, srgb=p.bi_srgb, rgbim=image, compat=p.bi_compat)
    q = d.inference(p.t)
    return np.asarray(q, dtype=np.float32).reshape(n_labels, h, w)


def crf_from_probs(image, probs, params="irn"):
    """Mean-field marginals Q (C, H, W) float32 for per-class scores ``probs`` (C, H, W) >= 0."""
    from pydensecrf.utils import unary_from_softmax

    p = _as_params(params)
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3:
        raise ValueError(f"probs must be (C, H, W), got {probs.shape}")
    image = _check_image(image, probs.shape[1:])
    unary = unary_from_softmax(probs, scale=p.scale)
    return _inference(image, unary, probs.shape[0], p)


def crf_from_labels(image, labels, n_labels, params="irn"):
    """Refined label map (H, W) int64 in ``[0, n_labels)`` from a label map trusted with ``gt_prob``."""
    from pydensecrf.utils import unary_from_labels

    p = _as_params(params)
    labels = np.asarray(labels)
    image = _check_image(image, labels.shape)
    if n_labels < 1 or labels.size and (labels.min() < 0 or labels.max() >= n_labels):
        raise ValueError(f"labels must lie in [0, {n_labels}), got [{labels.min()}, {labels.max()}]")
    if n_labels == 1:  # one possible label: nothing to infer (the unary would divide by zero)
        return np.zeros(labels.shape, dtype=np.int64)
    unary = unary_from_labels(labels.astype(np.int64), n_labels, gt_prob=p.gt_prob, zero_unsure=False)
    return _inference(image, unary, n_labels, p).argmax(0)
