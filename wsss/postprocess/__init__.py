"""Post-processing shared by the stages: dense CRF (presets) and pseudo masks."""

from .crf import CRF_PRESETS, CRFParams, crf_from_labels, crf_from_probs, crf_params
from .pseudo import (IGNORE, argmax_mask, foreground_keys, index_to_mask, pad_background, power_background,
                     set_ignore)

__all__ = ["CRF_PRESETS", "CRFParams", "crf_from_labels", "crf_from_probs", "crf_params",
           "IGNORE", "argmax_mask", "foreground_keys", "index_to_mask", "pad_background", "power_background",
           "set_ignore"]
