"""Saliency stage: C2AM(-H) and PoolNet (P-NOC pipeline), found by ``--method`` name.

    from wsss.saliency import SALIENCY_METHODS, SALIENCY_TASKS
    task = SALIENCY_TASKS.get("ccam")(cfg)    # trainable: ccam | poolnet (wsss.engine.TaskModule)
    method = SALIENCY_METHODS.get("ccam")()   # how maps are made: ccam | poolnet | cam-max | ...
    predict = method.predictor(cfg, state_dict)
    png = predict(sample)                     # uint8 (H, W), 0..255

Saliency maps on disk are uint8 gray PNGs ``<id>.png`` (0..255); any folder of such maps, made
here or elsewhere, feeds PoolNet training (``method.sal_dir``), the random walk stage and
``tools/evaluate.py --mode saliency``.
"""

from ..registry import Registry

SALIENCY_METHODS = Registry("saliency method")
SALIENCY_TASKS = Registry("saliency task")

from . import methods  # noqa: E402,F401  (registers the methods and, through methods.task, the tasks)

__all__ = ["SALIENCY_METHODS", "SALIENCY_TASKS"]
