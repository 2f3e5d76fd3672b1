"""A backbone from a config's ``model`` section, the same way for every stage.

Keys: ``backbone`` (required), ``output_stride`` (16), ``norm_mode`` (the stage's default:
``train`` for CAM methods, C2AM and DeepLab, ``frozen_affine`` for PoolNet, ``frozen`` for
AffinityNet), ``backbone_kwargs`` (e.g. ``{width: 32}``), and the two keys that load weight
files: ``weights`` (a public checkpoint, e.g. ImageNet) and ``backbone_init`` (the backbone of
another wsss experiment, ``backbone_init_prefix`` picks one of several).

A model whose trained checkpoint is loaded next needs neither file: ``pretrained=False``
(or a config passed through :func:`without_pretrained`) skips both, so a downloaded
checkpoint works without the ImageNet weights it started from.
"""

import copy

from ..errors import ConfigError

#: ``model`` keys that load weight files at build time
PRETRAINED_KEYS = ("weights", "backbone_init")


def backbone_from_config(model_cfg, pretrained=True, norm_mode="train", **overrides):
    """``build_backbone`` from a ``model`` section (``overrides`` replace its keys; ``norm_mode``
    is the stage's default when the section sets none); loads ``weights`` then ``backbone_init``
    unless ``pretrained`` is False."""
    from . import build_backbone

    m = {**(model_cfg or {}), **overrides}
    if not m.get("backbone"):
        raise ConfigError("model.backbone is not set", fix="add model.backbone (e.g. resnet50) to the config")
    backbone = build_backbone(m["backbone"], output_stride=int(m.get("output_stride") or 16),
                              norm_mode=m.get("norm_mode") or norm_mode,
                              weights=m.get("weights") if pretrained else None,
                              **(m.get("backbone_kwargs") or {}))
    if pretrained:
        init_backbone(backbone, m)
    return backbone


def init_backbone(backbone, model_cfg):
    """Load ``model.backbone_init`` (a checkpoint or experiment of another stage) into
    ``backbone``, under ``model.backbone_init_prefix`` (found when only one prefix fits)."""
    m = model_cfg or {}
    if m.get("backbone_init"):
        from ..engine.networks import load_network

        load_network(backbone, m["backbone_init"], m.get("backbone_init_prefix"), what="backbone",
                     prefix_key="model.backbone_init_prefix",
                     fix="point model.backbone_init to a checkpoint with the same backbone")
    return backbone


def without_pretrained(cfg):
    """A copy of ``cfg`` whose ``model`` section loads no weight file (a checkpoint follows)."""
    cfg = copy.deepcopy(cfg or {})
    cfg["model"] = {**(cfg.get("model") or {}), **dict.fromkeys(PRETRAINED_KEYS)}
    return cfg
