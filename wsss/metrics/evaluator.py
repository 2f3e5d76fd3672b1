"""Evaluate a directory of predictions against a split's ground truth: modes and the image loop.

A mode is one entry of ``MODES``: a function ``(job) -> result dict`` (see :func:`evaluate`).
Built in: ``png`` (index-PNG label maps) and ``cam`` (CAM files, background-threshold sweep).
Another mode (e.g. binary fg/bg ``saliency``) is added with ``@MODES.register("name")`` and
can reuse :func:`accumulate` and :func:`label_map_result`.
"""

import concurrent.futures as cf
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.io import find_cam, load_cam, load_mask
from ..errors import ConfigError, DataError
from ..registry import Registry
from .cam_eval import cam_to_labels, sweep_confusions
from .confusion import confusion_matrix
from .contour import contour_counts, summarize_contour
from .miou import summarize_confusion

MODES = Registry("evaluation mode")


class DatasetGT:
    """Ground-truth masks of a ``wsss.data`` dataset (``ids``, ``class_names``, ``gt_mask_path``)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.ids = list(dataset.ids)
        self.class_names = ["background"] + list(dataset.class_names)

    def path(self, image_id):
        p = self.dataset.gt_mask_path(image_id)
        if p is None:
            raise DataError(f"image {image_id!r} has no ground-truth mask", path=self.dataset.root,
                            fix="evaluate a split with masks (e.g. train or val, not test)")
        return Path(p)

    def load(self, image_id):
        return load_mask(self.path(image_id))


class DirectoryGT:
    """Ground-truth index PNGs ``<gt_dir>/<id>.png`` for explicit ids and class names (bg first)."""

    def __init__(self, gt_dir, ids, class_names):
        self.gt_dir = Path(gt_dir)
        self.ids = list(ids)
        self.class_names = list(class_names)

    def path(self, image_id):
        return self.gt_dir / f"{image_id}.png"

    def load(self, image_id):
        return load_mask(self.path(image_id))


@dataclass
class EvalJob:
    """What to evaluate: ground truth, predictions and options shared by every mode."""

    gt: object  # DatasetGT / DirectoryGT: ids, class_names (bg first), path(id), load(id)
    pred_dir: Path
    thresholds: list = field(default_factory=list)  # cam mode
    stored_background: bool = True  # cam mode: score files that store one against their background map
    contour: bool = True
    contour_definition: str = "icam"
    workers: int = 1
    progress: bool = True

    @property
    def num_classes(self):
        return len(self.gt.class_names)


def accumulate(fn, ids, workers=1, desc="evaluate", progress=True):
    """Sum ``fn(id)`` (a dict of numpy arrays) over ``ids`` with a thread pool and a tqdm bar.

    Decoding (PIL, cv2) and the numpy kernels release the GIL, so threads scale without
    pickling masks between processes. The first exception stops the loop and is re-raised.
    """
    if not ids:
        raise ValueError("nothing to evaluate: no image ids")
    total = None
    bar = tqdm(total=len(ids), desc=desc, unit="img", disable=not progress, dynamic_ncols=True)

    def add(part):
        nonlocal total
        total = part if total is None else {k: total[k] + part[k] for k in total}
        bar.update(1)

    try:
        if workers <= 1:
            for image_id in ids:
                add(fn(image_id))
        else:
            with cf.ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(fn, image_id) for image_id in ids]
                try:
                    for fut in futures:
                        add(fut.result())
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
    finally:
        bar.close()
    return total


def _data_error(err, path, fix):
    return DataError(str(err), path=path, fix=fix)


def check_predictions(ids, pred_dir, find, what, fix):
    """Raise one DataError listing how many predictions are missing and the first few ids."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError("prediction directory not found", path=pred_dir, fix=fix)
    missing = [i for i in ids if not find(pred_dir, i).is_file()]
    if missing:
        head = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(f"{len(missing)} of {len(ids)} {what} missing (e.g. {head})", path=pred_dir, fix=fix)


def png_path(pred_dir, image_id):
    return Path(pred_dir) / f"{image_id}.png"


def label_map_stats(job, image_id, predict):
    """Confusion (+ contour counts) of one image; ``predict(id, gt)`` -> (label map, its path)."""
    gt = job.gt.load(image_id)
    pred, pred_path = predict(image_id, gt)
    if pred.shape != gt.shape:
        raise DataError(f"prediction is {pred.shape[1]}x{pred.shape[0]} but the ground truth is "
                        f"{gt.shape[1]}x{gt.shape[0]} (W x H)", path=pred_path,
                        fix="predict at the image's original size")
    try:
        out = {"conf": confusion_matrix(gt, pred, job.num_classes)}
    except ValueError as e:
        raise _data_error(e, job.gt.path(image_id), "fix the mask or the dataset's class list") from None
    if job.contour:
        out["contour"] = contour_counts(gt, pred, job.num_classes, job.contour_definition)
    return out


def label_map_result(job, totals):
    """Report dict of summed label-map stats: scores, per-class table, contour F."""
    result = summarize_confusion(totals["conf"], job.gt.class_names)
    result["contour_f"] = (summarize_contour(totals["contour"], job.gt.class_names[1:], job.contour_definition)
                           if "contour" in totals else None)
    return result


def evaluate_label_maps(job, predict, desc="evaluate"):
    """Score label maps ``predict(id, gt) -> (uint8 map, path or None)`` over the split."""
    totals = accumulate(lambda i: label_map_stats(job, i, predict), job.gt.ids, job.workers, desc, job.progress)
    return totals, label_map_result(job, totals)


def sweep_result(confs, thresholds, class_names):
    """Report dict at the best threshold of a sweep (first best on ties, as the references)
    with ``threshold`` and ``curve`` (mIoU and mean FP / FN per threshold)."""
    curve = [summarize_confusion(c, class_names) for c in confs]
    best = int(np.argmax([c["miou"] for c in curve]))
    result = dict(curve[best])
    result["threshold"] = thresholds[best]
    result["curve"] = [{"threshold": t, "miou": c["miou"], "mean_fp_foreground": c["mean_fp_foreground"],
                        "mean_fn_foreground": c["mean_fn_foreground"]} for t, c in zip(thresholds, curve)]
    return result


@MODES.register("png")
def evaluate_png(job):
    """Index-PNG predictions ``<pred_dir>/<id>.png`` (255 = no prediction, counted as a miss)."""
    ids = job.gt.ids
    check_predictions(ids, job.pred_dir, png_path, "prediction PNGs",
                      "run the stage that writes these masks for this split, or fix --pred")

    def predict(image_id, gt):
        p = png_path(job.pred_dir, image_id)
        return load_mask(p), p

    return evaluate_label_maps(job, predict, "evaluate png")[1]


def _mixed_background(path):
    return DataError("some CAM files of this folder store a background map and others do not", path=path,
                     fix="re-run tools/infer_cam.py for the whole split with one method")


def _load_cam(job, path, stored):
    """A CAM file; ``stored``: whether this pass scores against stored background maps. Files of
    a sweep drop a stored map when the job ignores them (``stored_background=False``)."""
    cam = load_cam(path, fields=("hr_cam", "hr_cam_bg"))  # the stride-4 maps are not scored
    if not stored and not job.stored_background:
        cam.pop("cam_bg", None), cam.pop("hr_cam_bg", None)
    if stored != ("hr_cam_bg" in cam):
        raise _mixed_background(path)
    return cam


def _cam_labels(job, image_id, threshold=None):
    """(label map of a CAM file at ``threshold``, or against its stored background when
    ``threshold`` is None, its path)."""
    path = find_cam(job.pred_dir, image_id)
    cam = _load_cam(job, path, stored=threshold is None)
    try:
        return cam_to_labels(cam, threshold), path
    except ValueError as e:
        raise _data_error(e, path, f"check that {path.name} belongs to this image and dataset") from None


def evaluate_cam_background(job):
    """CAM files that store their method's background map: argmax against it, no threshold."""
    def predict(image_id, gt):
        return _cam_labels(job, image_id)

    result = evaluate_label_maps(job, predict, "evaluate cam (stored background)")[1]
    result["background"] = "stored in the CAM files (no threshold)"
    result["protocol"] = "stored-background"
    return result


@MODES.register("cam")
def evaluate_cam(job):
    """CAM files: sweep the background threshold, report the best one and the whole curve.

    The contour F-score (needs the label maps) is computed in a second pass at the best threshold.
    Files that store a background map (``hr_cam_bg``) are scored against it instead, without a
    sweep (:func:`evaluate_cam_background`), unless ``job.stored_background`` is False (then
    their foreground channels are swept like any other). ``protocol`` says which was used.
    """
    ids = job.gt.ids
    fix = "run tools/infer_cam.py for this split, or fix --pred"
    check_predictions(ids, job.pred_dir, find_cam, "CAM files (.npz/.npy)", fix)
    if job.stored_background and "hr_cam_bg" in load_cam(find_cam(job.pred_dir, ids[0])):
        return evaluate_cam_background(job)
    thresholds = sorted(job.thresholds)
    if not thresholds:
        raise ConfigError("cam mode needs at least one threshold", fix="pass --thresholds a:b:step")

    def sweep(image_id):
        gt = job.gt.load(image_id)
        path = find_cam(job.pred_dir, image_id)
        cam = _load_cam(job, path, stored=False)
        try:
            return {"conf": sweep_confusions(gt, cam, thresholds, job.num_classes)}
        except ValueError as e:
            raise _data_error(e, path, f"check that {path.name} belongs to this image and dataset") from None

    confs = accumulate(sweep, ids, job.workers, "evaluate cam", job.progress)["conf"]
    result = sweep_result(confs, thresholds, job.gt.class_names)
    result["protocol"] = "sweep"
    best, t_best = thresholds.index(result["threshold"]), result["threshold"]
    result["contour_f"] = None
    if job.contour:
        totals, at_best = evaluate_label_maps(job, lambda i, gt: _cam_labels(job, i, t_best),
                                              f"contour at t={t_best:.2f}")
        if not np.array_equal(totals["conf"], confs[best]):  # both passes must agree exactly
            raise RuntimeError("threshold sweep and direct evaluation disagree; please report this bug")
        result["contour_f"] = at_best["contour_f"]
    return result


def evaluate(job, mode):
    """Run a registered mode; adds ``mode``, ``num_images`` and the metric definitions."""
    result = MODES.get(mode)(job)
    result["mode"] = mode
    result["num_images"] = len(job.gt.ids)
    result["units"] = "percent"
    result["definitions"] = {
        "miou": "confusion matrix summed over the split, gt 255 ignored, predicted 255 = miss; "
                "IoU = TP/(TP+FP+FN); mean over all classes incl. background (PuzzleCAM/P-NOC)",
        "fp_fn": "fp = FP/(TP+FP+FN), fn = FN/(TP+FP+FN) per class; means over foreground classes",
        "contour_f": None if result.get("contour_f") is None else job.contour_definition,
    }
    return result
