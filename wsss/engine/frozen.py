"""Calling a network as a fixed function: gradients reach its inputs, never its parameters."""

from torch.func import functional_call


def frozen_call(module, *args, **kwargs):
    """``module(*args, **kwargs)`` with every parameter detached.

    Gradients flow back through the module to its inputs (e.g. the CAMs that built an
    erased image) but none accumulate in the module's own parameters, so a loss that must
    train only the network upstream (P-OC/P-NOC's CAM generator through the ordinary
    classifier) can share one backward pass with losses that do train ``module``.
    Buffers are the module's own (BatchNorm in train mode still updates its statistics).
    """
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, args, kwargs, strict=False)
