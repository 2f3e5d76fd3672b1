"""The saliency methods behind ``--method``: how each is trained (if at all) and how it predicts.

=============  ===========================================  ==================================
method         training data                                written PNG
=============  ===========================================  ==================================
``ccam``       images + CAM hints (``method.cam_dir``);     0/255: threshold + 2-label dCRF
               ``method.hint_weight=0`` = plain C2AM        (``infer.binarize=false``: 0..255)
``poolnet``    images + saliency PNGs (``method.sal_dir``)  0..255: sigmoid * 255
``threshold``  none (reads ``method.act_dir``: 0..255       0/255: threshold + 2-label dCRF,
               activations, e.g. C2AM-H's unbinarized)      as ``ccam`` does
``cam-max``    none (reads ``method.cam_dir``)              0..255: max foreground CAM * 255
``all-fg``     none                                         255 everywhere (trivial baseline)
``all-bg``     none                                         0 everywhere (trivial baseline)
=============  ===========================================  ==================================

A method's ``predictor(cfg, state_dict, device)`` returns ``predict(samples) -> [uint8 (H, W)]``
for a list of sample dicts of the untransformed dataset (``id``, ``image`` uint8 RGB); images of
equal size run as one batch.
"""

from functools import partial
from pathlib import Path

import numpy as np

from ..data.io import find_cam, load_cam
from ..errors import ConfigError
from . import SALIENCY_METHODS, SALIENCY_TASKS
from .datasets import hint_from_cam, load_saliency
from .infer import binarize, by_shape, ccam_activations, poolnet_saliencies, to_uint8
from .task import method_dir


def batched(fn):
    """``predict(samples)`` from ``fn(equal-size images) -> maps``, one call per image size."""
    def predict(samples):
        images = [s["image"] for s in samples]
        out = [None] * len(images)
        for group in by_shape(images):
            for i, m in zip(group, fn([images[i] for i in group])):
                out[i] = m
        return out

    return predict


def mask_threshold(infer_cfg):
    """``infer.threshold`` as a number (``best`` is resolved by runners/2-saliency.sh, not here)."""
    value = infer_cfg.get("threshold", 0.2)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"infer.threshold must be a number, got {value!r}",
                          fix="pass infer.threshold=<t in [0, 1]>, or infer.binarize=false to write the activation "
                              "(runners/2-saliency.sh turns 'best' into the best threshold of the training sweep)") from None


class _TrainedMethod:
    """Shared loading of a trained task's weights (``task``: its class in ``SALIENCY_TASKS``)."""

    task = None

    def build(self, cfg, state_dict, device):
        task = self.task(cfg) if state_dict is None else self.task.from_checkpoint(cfg, None, state_dict)
        return task.model.to(device).eval()


@SALIENCY_METHODS.register("ccam")
class CCAMMethod(_TrainedMethod):
    """C2AM-H (C2AM when ``method.hint_weight=0``)."""

    task = SALIENCY_TASKS.get("ccam")

    def predictor(self, cfg, state_dict, device="cpu"):
        model = self.build(cfg, state_dict, device)
        inf = cfg.get("infer") or {}
        scales = tuple(inf.get("scales", (0.5, 1.0, 1.5, 2.0)))
        flip, crf, binary = bool(inf.get("flip", True)), inf.get("crf", "irn"), bool(inf.get("binarize", True))
        threshold = mask_threshold(inf) if binary else None

        def finish(image, act):
            return binarize(image, act, threshold, crf) if binary else to_uint8(act)

        return batched(lambda images: [finish(im, a) for im, a in
                                       zip(images, ccam_activations(model, images, scales, flip, device))])


@SALIENCY_METHODS.register("poolnet")
class PoolNetMethod(_TrainedMethod):
    """PoolNet trained on another method's saliency PNGs."""

    task = SALIENCY_TASKS.get("poolnet")

    def predictor(self, cfg, state_dict, device="cpu"):
        model = self.build(cfg, state_dict, device)
        min_side = int((cfg.get("infer") or {}).get("min_side", 100))
        return batched(lambda images: [to_uint8(p) for p in poolnet_saliencies(model, images, min_side, device)])


@SALIENCY_METHODS.register("cam-max")
class CamMaxMethod:
    """Training-free baseline: the max over present classes of the image's CAMs."""

    task = None

    def predictor(self, cfg, state_dict=None, device="cpu"):
        cam_dir = method_dir(cfg.get("method"), "cam_dir", "cam-max")

        def one(sample):
            path = find_cam(cam_dir, sample["id"])
            return to_uint8(hint_from_cam(load_cam(path), sample["image"].shape[:2], path))

        return lambda samples: [one(s) for s in samples]


@SALIENCY_METHODS.register("threshold")
class ThresholdMethod:
    """Binarize a folder of 0..255 activation maps (``method.act_dir``) as C2AM-H's inference
    does: ``value / 255 > infer.threshold``, then the 2-label dense CRF ``infer.crf``. Lets the
    activations be computed once and thresholded at a value chosen afterwards (runner 2)."""

    task = None

    def predictor(self, cfg, state_dict=None, device="cpu"):
        act_dir = method_dir(cfg.get("method"), "act_dir", "threshold")
        inf = cfg.get("infer") or {}
        threshold, crf = mask_threshold(inf), inf.get("crf", "irn")

        def one(sample):
            act = load_saliency(act_dir / f"{sample['id']}.png", shape=sample["image"].shape[:2])
            return binarize(sample["image"], act.astype(np.float32) / 255.0, threshold, crf)

        return lambda samples: [one(s) for s in samples]


class ConstantMethod:
    """Trivial baselines: every pixel salient (``all-fg``, 255) or none (``all-bg``, 0)."""

    task = None

    def __init__(self, value):
        self.value = value

    def predictor(self, cfg, state_dict=None, device="cpu"):
        return lambda samples: [np.full(s["image"].shape[:2], self.value, np.uint8) for s in samples]


SALIENCY_METHODS.register("all-fg")(partial(ConstantMethod, 255))
SALIENCY_METHODS.register("all-bg")(partial(ConstantMethod, 0))


_WORKER = {}


def predict_and_save(job, image_id):
    """Process-pool job (``tools/infer_saliency.py --workers``) of a training-free method: predict
    one image and write ``<out>/<id>.png``; one dataset and predictor per process. ``job``:
    ``dataset``, ``root``, ``split``, ``method``, ``cfg``, ``out``."""
    from ..data import build_dataset
    from ..data.io import save_gray_png

    if _WORKER.get("job") is not job:
        dataset = build_dataset(job["dataset"], job["root"], job["split"])
        _WORKER.update(job=job, dataset=dataset, index={i: n for n, i in enumerate(dataset.ids)},
                       predict=SALIENCY_METHODS.get(job["method"])().predictor(job["cfg"], None, "cpu"))
    sample = _WORKER["dataset"][_WORKER["index"][image_id]]
    save_gray_png(Path(job["out"]) / f"{image_id}.png", _WORKER["predict"]([sample])[0])
    return image_id
