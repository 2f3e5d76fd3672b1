"""Affinity labels: confident foreground / background from CAMs (+ saliency) and dense CRF.

A label map is uint8 at image size: 0 = confident background, ``c + 1`` = confident class
``c``, 255 = unsure (no affinity supervision). Rules (:data:`LABEL_RULES`, config key
``method.labels.rule``), each computed as the reference does:

- ``saliency`` (P-NOC ``scripts/rw/make_affinity_labels.py`` with ``--sal_dir``; VOC:
  fg 0.40, bg 0.10, CRF t 10, gt_prob 0.7): salient = saliency > ``bg_threshold``, refined by a
  2-label CRF; CAM argmax with background padded at ``fg_threshold``, zeroed outside the
  salient region, refined by a CRF -> ``fg``. Label ``fg`` where ``fg > 0``; 0 where neither is
  salient nor foreground; 255 elsewhere (salient but below the CAM threshold).
- ``threshold`` (IRN ``step/cam_to_ir_label.py``; fg 0.30, bg 0.05): two CRF-refined CAM
  argmaxes with background padded at ``fg_threshold`` (high: confident fg) and
  ``bg_threshold`` (low: confident bg); same combination.
- ``alpha`` (psa ``infer_cls.py`` + ``voc12/data.py``; alphas 4 / 32 in the released code,
  4 / 24 in the CVPR paper, 2 / 21 in AEFT): CRF marginals of ``[(1 - max cam)^alpha, cams]``
  (psa CRF preset) at a low and a high alpha; label = low-alpha argmax where it is foreground,
  255 where it is background, then 0 wherever the high-alpha argmax is background.

See docs/methods/affinity-labels.md.
"""

from pathlib import Path

import numpy as np

from ..data.io import find_cam, load_cam, load_mask, save_index_png
from ..errors import ConfigError, DataError
from ..postprocess.crf import crf_from_labels, crf_from_probs
from ..postprocess.pseudo import IGNORE, foreground_keys, index_to_mask, pad_background
from ..registry import Registry

LABEL_RULES = Registry("affinity-label rule")

DEFAULTS = {
    "saliency": {"fg_threshold": 0.40, "bg_threshold": 0.10, "crf": {"preset": "irn", "t": 10, "gt_prob": 0.7}},
    "threshold": {"fg_threshold": 0.30, "bg_threshold": 0.05, "crf": {"preset": "irn", "t": 10, "gt_prob": 0.7}},
    "alpha": {"low_alpha": 4, "high_alpha": 32, "crf": {"preset": "psa", "t": 10}},
}


def combine_confident(fg, bg):
    """IRN/P-NOC: ``fg`` where ``fg > 0``; 0 where ``fg == 0 and bg == 0``; 255 otherwise."""
    fg = np.asarray(fg)
    out = fg.astype(np.uint8, copy=True)
    out[fg == 0] = IGNORE
    out[(fg == 0) & (np.asarray(bg) == 0)] = 0
    return out


def _crf_argmax(image, cams, keys, threshold, crf):
    """CRF-refined argmax of the CAMs with background padded at ``threshold``, as mask values."""
    index = pad_background(cams, threshold=threshold).argmax(0)
    return index_to_mask(crf_from_labels(image, index, len(keys) + 1, crf), keys)


@LABEL_RULES.register("saliency")
def saliency_rule(image, cams, keys, saliency, fg_threshold=0.40, bg_threshold=0.10, crf=None):
    """P-NOC: saliency decides the background, the CAMs the classes (see the module doc)."""
    if saliency is None:
        raise DataError("the 'saliency' affinity-label rule needs saliency maps",
                        fix="pass --saliency DIR, or use method.labels.rule=threshold|alpha")
    crf = crf or DEFAULTS["saliency"]["crf"]
    salient = crf_from_labels(image, (np.asarray(saliency) > bg_threshold).astype(np.int64), 2, crf)
    index = pad_background(cams, threshold=fg_threshold).argmax(0) * salient
    fg = index_to_mask(crf_from_labels(image, index, len(keys) + 1, crf), keys)
    return combine_confident(fg, salient)


@LABEL_RULES.register("threshold")
def threshold_rule(image, cams, keys, saliency=None, fg_threshold=0.30, bg_threshold=0.05, crf=None):
    """IRN: confident foreground at a high, confident background at a low padding threshold."""
    crf = crf or DEFAULTS["threshold"]["crf"]
    fg = _crf_argmax(image, cams, keys, fg_threshold, crf)
    bg = _crf_argmax(image, cams, keys, bg_threshold, crf)
    return combine_confident(fg, bg)


@LABEL_RULES.register("alpha")
def alpha_rule(image, cams, keys, saliency=None, low_alpha=4, high_alpha=32, crf=None):
    """psa: CRF of ``[(1 - max)^alpha, cams]`` at a low and a high alpha (see the module doc)."""
    crf = crf or DEFAULTS["alpha"]["crf"]

    def crf_index(alpha):
        return crf_from_probs(image, pad_background(cams, alpha=alpha), crf).argmax(0)

    low, high = crf_index(low_alpha), crf_index(high_alpha)
    out = index_to_mask(low, keys)
    out[low == 0] = IGNORE
    out[high == 0] = 0
    return out


def rule_params(label_cfg):
    """(rule name, keyword arguments) from a ``method.labels`` config, defaults filled in."""
    cfg = dict(label_cfg or {})
    name = cfg.pop("rule", "saliency")
    LABEL_RULES.get(name)
    params = dict(DEFAULTS[name])
    unknown = sorted(set(cfg) - set(params))
    if unknown:
        raise ConfigError(f"method.labels has unknown key(s) {unknown} for rule {name!r}",
                          fix=f"use some of: rule, {', '.join(params)}")
    for k, v in cfg.items():
        params[k] = {**params[k], **v} if k == "crf" and isinstance(v, dict) else v
    return name, params


def affinity_labels(rule, image, cams, keys, saliency=None, **params):
    """Affinity label map (H, W) uint8 for one image by ``rule`` (see :data:`LABEL_RULES`).

    ``cams`` (K, H, W) are the image-size CAMs (``hr_cam``) of the classes ``keys`` (0-based),
    ``saliency`` (H, W) in [0, 1] or None.
    """
    cams = np.asarray(cams, dtype=np.float32)
    image = np.asarray(image)
    if cams.shape[1:] != image.shape[:2]:
        raise DataError(f"CAMs are {cams.shape[1:]} but the image is {image.shape[:2]}",
                        fix="use the hr_cam of tools/infer_cam.py for this split")
    if saliency is not None and np.shape(saliency) != image.shape[:2]:
        raise DataError(f"saliency map is {np.shape(saliency)} but the image is {image.shape[:2]}",
                        fix="use saliency maps inferred on the same images")
    return LABEL_RULES.get(rule)(image, cams, keys, saliency, **params)


def label_file_job(state, index):
    """Process-pool job: write image ``index``'s affinity label PNG (skipped if it exists).

    ``state``: ``dataset`` (no transform), ``cam_dir``, ``sal_dir`` (or None), ``out_dir``,
    ``rule``, ``params``, ``overwrite``. Returns ``(id, counts)`` with counts of background,
    foreground and ignored pixels (None when skipped).
    """
    ds = state["dataset"]
    image_id = ds.ids[index]
    out = Path(state["out_dir"]) / f"{image_id}.png"
    if out.is_file() and not state["overwrite"]:
        return image_id, None
    image = ds[index]["image"]
    cam_path = find_cam(state["cam_dir"], image_id)
    cam = load_cam(cam_path)
    if "hr_cam" not in cam:
        raise DataError("CAM file has no hr_cam", path=cam_path, fix="re-run tools/infer_cam.py")
    cams = cam["hr_cam"]
    keys = foreground_keys(cam["keys"], cams.shape[0], path=cam_path)
    saliency = None
    if state.get("sal_dir"):
        saliency = load_mask(Path(state["sal_dir"]) / f"{image_id}.png").astype(np.float32) / 255.0
    label = affinity_labels(state["rule"], image, cams, keys, saliency, **state["params"])
    save_index_png(out, label)
    return image_id, (int((label == 0).sum()), int(((label > 0) & (label < IGNORE)).sum()),
                      int((label == IGNORE).sum()))
