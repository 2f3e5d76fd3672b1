"""Extra pixel losses of segmentation training, added by name (``method.extra_loss``).

A recipe may add a term to DeepLab's cross-entropy, e.g. ICAM trains its DeepLab-v1 with
``CE + 0.5 x`` its feature-similarity loss (docs/methods/psa.md, "DeepLab-v1 recipe"). Config:

    method:
      extra_loss: {name: entropy, weight: 0.1}     # other keys are the loss's keyword options

An entry of :data:`PIXEL_LOSSES` is ``fn(logits, batch, **options) -> scalar``: ``logits`` are
the head's raw logits at its stride (N, K, h, w) (before the upsampling to the input size), and
``batch`` the training batch (``image`` normalised (N, 3, H, W), ``mask`` (N, H, W)).
"""

import functools
import inspect

import torch

from ..errors import ConfigError
from ..registry import Registry

PIXEL_LOSSES = Registry("segmentation pixel loss (method.extra_loss.name)")


@PIXEL_LOSSES.register("entropy")
def entropy_loss(logits, batch, eps=1e-8):
    """Mean Shannon entropy (nats) of the per-pixel softmax, over every pixel of the logit grid:
    ``-mean_{n,i} sum_k p_k log p_k`` (entropy minimisation: sharper, more confident maps)."""
    p = torch.softmax(logits.float(), dim=1)
    return -(p * torch.log(p + eps)).sum(1).mean()


def build_extra_loss(spec):
    """``(name, weight, fn)`` of a ``method.extra_loss`` config, or None when it is unset.

    ``fn(logits, batch)`` calls the registered loss with the config's remaining keys.
    """
    if not spec:
        return None
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"method.extra_loss must be a mapping with a name, got {spec!r}",
                          fix=f"e.g. method.extra_loss={{name: entropy, weight: 0.1}} (names: "
                              f"{', '.join(PIXEL_LOSSES.names())})")
    options = {k: v for k, v in spec.items() if k not in ("name", "weight")}
    fn = PIXEL_LOSSES.get(spec["name"])
    known = [n for n in inspect.signature(fn).parameters if n not in ("logits", "batch")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"method.extra_loss {spec['name']!r} has no option(s) {unknown}",
                          fix=f"its options: {', '.join(known) or 'none'} (and weight)")
    return spec["name"], float(spec.get("weight", 1.0)), functools.partial(fn, **options)
