"""Segmentation stage: DeepLab v1/v2/v3+, its loss and multi-scale inference.

Trainable tasks register in ``SEG_TASKS`` (``deeplab``, :mod:`wsss.segmentation.task`); the
registry imports them at its first lookup, since they need the training engine.
"""

from ..registry import Registry

SEG_TASKS = Registry("segmentation task", package=__name__)

from .deeplab import MODELS, SegmentationModel, build_segmentation_model  # noqa: E402
from .inference import image_logits, multiscale_logits, pyramid_logits  # noqa: E402
from .loss import IGNORE_INDEX, segmentation_loss  # noqa: E402

__all__ = ["SEG_TASKS", "MODELS", "SegmentationModel", "build_segmentation_model", "multiscale_logits",
           "image_logits", "pyramid_logits",
           "IGNORE_INDEX", "segmentation_loss"]
