"""Benchmark-only stand-in for ``torchvision.models``: importable (P-NOC's ``core.mcar`` imports it
at module level), but no model can be built from it; the benchmarks never ask for one."""

__all__ = ["resnet50", "resnet101"]


def _unavailable(name):
    def build(*args, **kwargs):
        raise NotImplementedError(f"torchvision.models.{name} is not part of the wsss benchmark shim")

    build.__name__ = name
    build.__doc__ = f"Not available in the benchmark shim (raises NotImplementedError): {name}."
    return build


resnet50 = _unavailable("resnet50")
resnet101 = _unavailable("resnet101")
