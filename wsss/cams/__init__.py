"""CAM methods (registry ``METHODS``, one file each), the CAM classifier and multi-scale inference.

Every module of this package is imported on import, so a new method file registers itself
(``@METHODS.register("name")``) without further edits.
"""

from ..registry import import_submodules
from .base import METHODS, CAMMethod, build_method
from .classifier import Classifier

import_submodules(__name__)

__all__ = ["METHODS", "CAMMethod", "build_method", "Classifier"]
