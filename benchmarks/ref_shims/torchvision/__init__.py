"""Benchmark-only stand-in for ``torchvision``, which has no build for the CPU torch the wsss
benchmarks run on: ``transforms`` (and ``transforms.functional``) re-implemented for what the
reference implementations' data pipelines use, ``utils`` (``make_grid``, ``save_image``) and an
empty ``models`` whose constructors fail.
Our own code for benchmarks/vs_reference.py and friends, placed on the references' ``sys.path``
as ``<refs>/shims``; not torchvision's code and not a general replacement for it.
"""

from . import models, transforms, utils

__version__ = "0.0.0+wsss.benchmark.shim"
__all__ = ["models", "transforms", "utils"]
