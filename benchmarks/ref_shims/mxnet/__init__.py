"""Benchmark-only stand-in for ``mxnet``: only ``mxnet.nd.load``, which the psa-lineage references
(ICAM, CPN, AEFT) call in ``convert_mxnet_to_torch`` to read ImageNet ResNet-38 weights. It returns
no parameters, so those networks keep their random initialisation in the benchmarks."""

from . import nd

__all__ = ["nd"]
