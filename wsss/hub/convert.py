"""Released checkpoints -> wsss experiment folders the tools load as they are (docs/hub.md).

A converter (registry :data:`CONVERTERS`) is data: the toolkit task the file becomes, the
task's prefix for the network (``net.`` or ``model.``), and an ordered table of key-prefix
renames for everything that is not the backbone. The backbone is found by
:func:`wsss.backbones.weights.split_backbone`, the same rule the ImageNet loader uses (P-NOC's
three code eras: ``model.*`` + ``stage*`` aliases, ``stage*`` only, ``backbone.*``; psa's plain
names), or under a fixed prefix (PoolNet's ``base.resnet.``). Keys a converter does not know are
an error, never silently dropped; P-NOC's aliases (``stage*``, ``backbone.<digit>``,
``edge_layers``, ``path_indices_*``) and the backbone's own classifier (``fc``) are dropped.

:func:`convert` writes ``<exp>/config.yaml`` (the repository's config for the artefact plus its
overrides, ``model.weights: null``), ``<exp>/checkpoints/last.pth`` (``state_dict``, ``config``,
``epoch``, ``step``, ``format`` = ``wsss-checkpoint-1``, ``source``) and ``<exp>/source.json``,
after building the task from that config and loading the state strictly (keys and shapes): the
import is structurally verified before anything is written, and the folder appears atomically.
"""

import contextlib
import copy
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..backbones.weights import HEADS, read_checkpoint, split_backbone
from ..config import load_config, save_config, set_dotted
from ..data.io import write_json
from ..engine.checkpoint import FORMAT, save_checkpoint
from ..errors import CheckpointError, ConfigError
from ..registry import Registry
from ..stage import stage_task
from . import REPO_ROOT

CONVERTERS = Registry("hub converter")
_SHOWN = 6


@dataclass(frozen=True)
class Converter:
    """``task``: the stage (:func:`wsss.stage.stage_task`); ``wrap``: the task's network prefix; ``renames``: ordered
    ``(old prefix, new prefix)`` pairs for the non-backbone keys (the first match wins);
    ``trunk``: a fixed backbone prefix instead of the era rule; ``backbone``: False for networks
    without one (every key goes through ``renames``); ``add``: extra entries; ``drop``: prefixes of
    released keys the toolkit network does not have and that are dropped on purpose (listed in the
    report, e.g. AEFT's unused ``bn8``); ``arch(state, cfg)``: config overrides read from the
    file's keys (e.g. which backbone it holds); ``companions``: ``(task prefix, artefact name)``
    pairs of other registry artefacts, already downloaded, whose weights complete the task (loaded
    as their own converter reads them)."""

    task: str
    wrap: str
    renames: tuple = ()
    trunk: str = None
    backbone: bool = True
    add: dict = field(default_factory=dict)
    drop: tuple = ()
    arch: object = None
    companions: tuple = ()
    note: str = ""


def _deeplabv3plus_renames():
    pairs = []
    for n in range(1, 5):
        pairs += [(f"aspp.aspp{n}.atrous_conv.", f"head.aspp.branches.{n - 1}.0."),
                  (f"aspp.aspp{n}.bn.", f"head.aspp.branches.{n - 1}.1.")]
    return tuple(pairs + [
        ("aspp.global_avg_pool.1.", "head.aspp.pool.1."), ("aspp.global_avg_pool.2.", "head.aspp.pool.2."),
        ("aspp.conv1.", "head.aspp.project.0."), ("aspp.bn1.", "head.aspp.project.1."),
        ("decoder.conv1.", "head.low.0."), ("decoder.bn1.", "head.low.1."),
        ("decoder.classifier.0.", "head.decoder.0.0."), ("decoder.classifier.1.", "head.decoder.0.1."),
        ("decoder.classifier.4.", "head.decoder.2.0."), ("decoder.classifier.5.", "head.decoder.2.1."),
        ("decoder.classifier.8.", "head.classifier."),
    ])


CONVERTERS.register("pnoc-classifier")(Converter(
    task="cam", wrap="net.", renames=(("classifier.weight", "head.weight"),),
    note="P-NOC Classifier (vanilla / OC / P-OC / P-NOC generators) -> method cam"))
CONVERTERS.register("pnoc-ccam")(Converter(
    task="saliency", wrap="model.",
    renames=(("ac_head.activation_head.weight", "head_conv.weight"), ("ac_head.bn_head.", "head_bn.")),
    add={"flipped": torch.tensor(False)},
    note="P-NOC CCAM (C2AM-H: the hints fix the polarity, so flipped = False) -> method ccam"))
CONVERTERS.register("pnoc-affinity")(Converter(
    task="affinity", wrap="net.", renames=tuple((f"fc_edge{i}.", f"edge.fc_edge{i}.") for i in range(1, 7)),
    note="P-NOC AffinityNet (IRN boundary branch) -> the affinity stage"))
CONVERTERS.register("pnoc-deeplabv3plus")(Converter(
    task="segmentation", wrap="model.", renames=_deeplabv3plus_renames(),
    note="P-NOC DeepLabV3Plus (ASPP 1/6/12/18, GroupNorm(4) head) -> deeplabv3plus"))
CONVERTERS.register("pnoc-poolnet")(Converter(
    task="saliency", wrap="model.", trunk="base.resnet.",
    renames=(("base.ppms_pre.", "ggm.reduce."), ("base.ppms.", "ggm.pools."), ("base.ppm_cat.", "ggm.fuse."),
             ("base.infos.", "ggm.guides."), ("convert.convert0.", "convert."),
             *((f"deep_pool.{i}.conv_sum_c.", f"fams.{i}.conv_fuse.") for i in range(5)),
             ("deep_pool.", "fams."), ("score.score.", "score.")),
    note="P-NOC PoolNet -> method poolnet: the names load, but wsss runs a torchvision-style ResNet-50 on "
         "ImageNet-normalised RGB, PoolNet a caffe-style one on BGR minus the mean: predictions differ"))
CONVERTERS.register("psa-res38-cls")(Converter(
    task="cam", wrap="net.", renames=(("fc8.weight", "head.weight"),),
    note="psa res38_cls.pth (VOC CAM classifier, relu(fc8(conv6))) -> method cam on resnet38d"))
CONVERTERS.register("psa-res38-aff")(Converter(
    task="affinity", wrap="net.", renames=tuple((f"{n}.", f"{n}.") for n in ("f8_3", "f8_4", "f8_5", "f9")),
    note="psa res38_aff.pth / ICAM aff.pth (psa's AffinityNet on ResNet-38d: f8_3, f8_4, f8_5, f9) -> "
         "affinity task psa"))
CONVERTERS.register("icam-cam")(Converter(
    task="cam", wrap="net.",
    renames=(("fc8.", "fc8."), ("f8_3.", "side.f8_3."), ("f8_4.", "side.f8_4."), ("f9.", "pcm.f9.")),
    note="ICAM cam.pth (ResNet-38d, fc8 with background, SEAM's PCM f8_3/f8_4/f9) -> method icam"))
CONVERTERS.register("cpn")(Converter(
    task="cam", wrap="net.", renames=(("fc8.", "fc8."), ("f8_3.", "side.f8_3."), ("f8_4.", "side.f8_4."),
                                      ("f9.", "pcm.f9."), ("f10.", "f10.")),
    note="CPN.pth (ResNet-38d + fc8 with background, PCM / PRCM heads f8_3, f8_4, f9, f10) -> method cpn"))
CONVERTERS.register("aeft-cam")(Converter(
    task="cam", wrap="net.", renames=(("fc8.", "fc8."), ("fc9.", "fc9."), ("gconv", "gpp.gconv")), drop=("bn8.",),
    note="AEFT-GPP net_main (ResNet-38d, fc8 -> ReLU -> fc9, GPP gates gconv1..3) -> method aeft; bn8 is "
         "defined but unused in the reference's forward: dropped"))
CONVERTERS.register("spcam-superpixel")(Converter(
    task="superpixel", wrap="net.", backbone=False, renames=(("", ""),),
    note="SP-CAM's Q model / SpixelFCN's SpixelNet1l_bn (same names) -> the association network (psam)"))


def _spcam_arch(state, cfg):
    """SP-CAM's trunk from its keys: torchvision ResNet names (``model.conv1.weight``) mean its
    Puzzle-CAM ResNet with an undilated stride-1 layer4; ResNeSt's deep stem (``model.conv1.0.weight``)
    the release commit's ResNeSt-50."""
    backbone = ((cfg.get("model") or {}).get("backbone") or "")
    if "model.conv1.weight" in state:
        return {"model.backbone_kwargs.dilate_last": False,
                **({"model.backbone": "resnet50"} if backbone.startswith("resnest") else {})}
    if "model.conv1.0.weight" in state and not backbone.startswith("resnest"):
        return {"model.backbone": "resnest50", "model.backbone_kwargs": {}}
    return {}


CONVERTERS.register("spcam-classifier")(Converter(
    task="cam", wrap="net.", renames=(("get_qfeats.", "drm.q_feats."), ("get_tran_conv.", "drm.tran_conv."),
                                      ("classifier.", "head.")),
    arch=_spcam_arch, companions=(("spixel.", "spcam/q-final"),),
    note="SP-CAM SP_CAM_Model (release commit: model.* + stage aliases, get_qfeats, get_tran_conv, 1 + C "
         "classifier) + its Q model -> method spcam"))
CONVERTERS.register("icam-deeplabv1")(Converter(
    task="segmentation", wrap="model.",
    renames=(("conv_fov.", "head.fov.0."), ("bn_fov.", "head.fov.1."), ("conv_fov2.", "head.fov2.0."),
             ("bn_fov2.", "head.fov2.1."), ("cls_conv.", "head.classifier.")),
    note="ICAM final.pth (DeepLab-LargeFOV v1 on ResNet-38d) -> deeplabv1"))


def build_task(kind, cfg, num_classes, meta=False):
    """The toolkit task of ``kind`` from ``cfg``; ``meta=True`` builds it without memory or
    initialisation (on the meta device), to be filled by ``load_state_dict(..., assign=True)``."""
    with torch.device("meta") if meta else contextlib.nullcontext():
        return stage_task(kind, cfg)(cfg, num_classes)


def experiment_config(art, root=REPO_ROOT):
    """The effective config of ``art``'s experiment: its repository config + overrides, with
    ``model.weights``/``backbone_init`` null (the checkpoint holds every weight)."""
    path = Path(root) / art.config
    if not path.is_file():
        raise ConfigError(f"the config of {art.name} is missing", path=path,
                          fix="run from a wsss checkout (the hub reads configs/ of the repository)")
    cfg = load_config(path)
    cfg.pop("exp", None)
    for key, value in art.overrides.items():
        set_dotted(cfg, key, copy.deepcopy(value))
    set_dotted(cfg, "model.weights", None)
    set_dotted(cfg, "model.backbone_init", None)
    return cfg


def _few(keys):
    keys = list(keys)
    return ", ".join(keys[:_SHOWN]) + (f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")


def convert_state(conv, state, family, path=None):
    """Map a released state dict to the task's keys: ``(task state, report)``; unknown keys
    raise :class:`CheckpointError`."""
    if not conv.backbone:
        trunk, heads, dropped, layout = {}, {k.removeprefix("module."): v for k, v in state.items()}, [], "no backbone"
    elif conv.trunk:
        state = {k.removeprefix("module."): v for k, v in state.items()}
        trunk = {k[len(conv.trunk):]: v for k, v in state.items() if k.startswith(conv.trunk)}
        heads = {k: v for k, v in state.items() if not k.startswith(conv.trunk)}
        dropped, layout = [], f"prefix {conv.trunk}"
    else:
        trunk, heads, dropped, layout = split_backbone(state, family, path)
    own = HEADS.get(family, ())
    dropped += [k for k in trunk if k.split(".")[0] in own]
    out = {f"{conv.wrap}backbone.{k}": v for k, v in trunk.items() if k.split(".")[0] not in own}
    unknown = []
    for k, v in heads.items():
        if k.startswith(conv.drop):  # an empty tuple matches nothing
            dropped.append(k)
            continue
        old = next((o for o, _ in conv.renames if k.startswith(o)), None)
        if old is None:
            unknown.append(k)
            continue
        out[conv.wrap + dict(conv.renames)[old] + k[len(old):]] = v
    if unknown:
        raise CheckpointError(f"{len(unknown)} key(s) this converter does not know: {_few(unknown)}", path=path,
                              fix="check that the file is the artefact the registry names (another network?)")
    out.update({conv.wrap + k: v.clone() for k, v in conv.add.items()})
    out = {k: v.float() if v.is_floating_point() else v for k, v in out.items()}
    return out, {"layout": layout, "dropped": dropped}


def fit_to(task, state, path=None):
    """Check ``state`` against ``task.state_dict()`` (keys and shapes); BatchNorm's
    ``num_batches_tracked`` is added (0) or dropped to match. Returns the fitted state."""
    own = task.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.endswith("num_batches_tracked")}
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = torch.zeros((), dtype=v.dtype)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
              for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(ks)} {what} ({_few(ks)})" for what, ks in
                 (("missing", missing), ("unexpected", unexpected), ("shape mismatches", shapes)) if ks]
        raise CheckpointError("the converted checkpoint does not fit the toolkit model: " + "; ".join(parts),
                              path=path, fix="check the artefact's config and overrides in wsss/hub/registry.yaml "
                                              "(backbone, number of classes, head options)")
    return state


CHECKPOINT_SUFFIXES = (".pth", ".pt", ".pkl", ".ckpt")


def checkpoint_file(art, src):
    """``src`` itself, or for a folder (an unpacked archive, a Drive folder) the one file in it
    that matches ``art.member``, or, without a member pattern, its one checkpoint file (``.pth``,
    ``.pt``, ...; AEFT's Drive folder); none or several is an error."""
    src = Path(src)
    if not src.is_dir():
        return src
    if art.member:
        hits = sorted(p for p in src.glob(art.member) if p.is_file())
        what = f"files match {art.member!r}"
    else:
        hits = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
        what = f"checkpoint files ({', '.join(CHECKPOINT_SUFFIXES)})"
    if len(hits) != 1:
        found = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.suffix in CHECKPOINT_SUFFIXES)
        raise CheckpointError(f"{art.name}: the folder must hold exactly one checkpoint to convert; {len(hits)} "
                              f"{what} (checkpoint files there: {_few(found) or 'none'})", path=src,
                              fix="pass the checkpoint file itself: tools/download.py NAME --from FILE")
    return hits[0]


def _read_torch(name, path):
    raw, fmt = read_checkpoint(path)
    if fmt != "torch":
        raise CheckpointError(f"{name} must be a torch checkpoint, got {fmt}", path=path)
    return raw


def companion_artefacts(conv):
    """The registry artefacts ``conv`` needs besides its own file."""
    from . import get

    return [get(name) for _, name in conv.companions]


def companion_states(conv, paths=None):
    """The weights of ``conv``'s companion artefacts (``paths[name]``, else their file in the
    cache), each converted by its own converter, under the task prefixes ``conv.companions`` names."""
    out = {}
    for (prefix, name), art in zip(conv.companions, companion_artefacts(conv)):
        path = Path((paths or {}).get(name) or art.cache_path())
        if not path.is_file():
            raise CheckpointError(f"this network also needs {name}, which is not downloaded", path=path,
                                  fix=f"python tools/download.py {name}")
        other = CONVERTERS.get(art.converter)
        sub, _ = convert_state(other, _read_torch(name, path), None, path)
        out.update({prefix + k[len(other.wrap):]: v for k, v in sub.items()})
    return out


def convert(art, src, exp, overwrite=False, root=REPO_ROOT, companions=None):
    """Convert the downloaded file ``src`` of artefact ``art`` into the experiment folder
    ``exp`` (module docstring); returns a report dict. An existing ``exp`` is kept unless
    ``overwrite``. ``companions`` maps the names of the artefacts the converter also needs to
    their files (default: their place in the cache)."""
    exp = Path(exp)
    if not art.convertible:
        raise ConfigError(f"{art.name} has no converter ({art.status})",
                          fix="see docs/hub.md: its wsss module does not exist yet" if art.status == "module pending"
                          else "use its files as they are")
    if (exp / "checkpoints" / "last.pth").is_file() and not overwrite:
        return json.loads((exp / "source.json").read_text()) if (exp / "source.json").is_file() else {}
    conv = CONVERTERS.get(art.converter)
    src = checkpoint_file(art, src)
    cfg = experiment_config(art, root)
    raw = _read_torch(art.name, src)
    for key, value in (conv.arch(raw, cfg) if conv.arch else {}).items():
        set_dotted(cfg, key, value)
    task = build_task(conv.task, cfg, art.classes, meta=True)
    family = task.get_submodule(conv.wrap + "backbone").checkpoint_family if conv.backbone else None
    state, report = convert_state(conv, raw, family, src)
    state.update(companion_states(conv, companions))
    state = fit_to(task, state, src)
    task.load_state_dict(state, strict=True, assign=True)
    source = {"name": art.name, "file": str(src), "converter": art.converter, "layout": report["layout"],
              "dropped": report["dropped"], "config": art.config, "overrides": art.overrides,
              "status": art.status, "published": art.published, "note": conv.note}
    exp.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{exp.name}.", dir=exp.parent))
    try:
        save_config(cfg, tmp / "config.yaml")
        save_checkpoint(tmp / "checkpoints" / "last.pth", {
            "format": FORMAT, "state_dict": state, "config": cfg,
            "epoch": int((cfg.get("train") or {}).get("epochs", 0)), "step": 0, "source": source})
        write_json(tmp / "source.json", source)
        if exp.exists():
            shutil.rmtree(exp)
        tmp.rename(exp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return source


def load_experiment(exp, kind, num_classes, meta=True):
    """The task of a converted (or trained) experiment, weights loaded strictly from
    ``checkpoints/last.pth`` and built from ``config.yaml``; ``meta=True`` skips the random
    initialisation (the weights are assigned)."""
    from ..engine.checkpoint import extract_state_dict, load_checkpoint

    exp = Path(exp)
    cfg = load_config(exp / "config.yaml")
    state = extract_state_dict(load_checkpoint(exp / "checkpoints" / "last.pth"))
    task = build_task(kind, cfg, num_classes, meta=meta)
    task.load_state_dict(state, strict=True, assign=meta)
    if meta and any(t.is_meta for t in [*task.parameters(), *task.buffers()]):
        return load_experiment(exp, kind, num_classes, meta=False)  # a buffer outside the state dict
    return task.eval()
