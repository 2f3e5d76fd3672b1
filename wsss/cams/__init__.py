"""CAM methods (registry ``METHODS``, one file each), the CAM classifier and multi-scale inference.

Every module of this package is imported on import, so a new method file registers itself
(``@METHODS.register("name")``) without further edits.
"""

import importlib
import pkgutil

from .base import METHODS, CAMMethod, build_method
from .classifier import Classifier, backbone_from_config

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["METHODS", "CAMMethod", "build_method", "Classifier", "backbone_from_config"]
