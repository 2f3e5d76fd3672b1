"""Segmentation stage: DeepLab v1/v2/v3+, its loss and multi-scale inference.

The training task (:mod:`wsss.segmentation.task`) is imported on its own, since it needs the
training engine.
"""

from .deeplab import MODELS, SegmentationModel, build_segmentation_model
from .inference import image_logits, multiscale_logits, pyramid_logits
from .loss import IGNORE_INDEX, segmentation_loss

__all__ = ["MODELS", "SegmentationModel", "build_segmentation_model", "multiscale_logits",
           "image_logits", "pyramid_logits",
           "IGNORE_INDEX", "segmentation_loss"]
