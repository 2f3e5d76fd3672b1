"""Converters of the hub: a checkpoint written in each released layout loads strictly into the
toolkit task and computes exactly what the same weights compute when put straight into it.

Each released file is the ``state_dict()`` of a stand-in module whose attribute names follow the
reference code (docs/hub.md; P-NOC ``core/networks.py`` per code era, psa ``resnet38_cls``,
ICAM's CAM net and DeepLab-LargeFOV): the stand-in holds the very submodules of a toolkit task filled with
deterministic weights, so its keys are the released layout and its values the toolkit's.
The file is converted with the real registry entry (with a small backbone where the layout
does not depend on it), loaded back from the experiment folder, and run on the same input.
"""

import dataclasses

import pytest
import torch
from torch import nn

from wsss import hub
from wsss.backbones import build_backbone
from wsss.backbones.weights import load_weights, split_backbone
from wsss.errors import CheckpointError
from wsss.hub.convert import CONVERTERS, build_task, convert, experiment_config, load_experiment

SMALL = {"model.backbone": "resnet18", "model.backbone_kwargs": {"width": 8}}


class Holder(nn.Module):
    """A module whose children are given by name (a stand-in for a reference network)."""

    def __init__(self, **children):
        super().__init__()
        for name, child in children.items():
            self.add_module(name, child)


def fill_(module, seed=0, skip=None):
    """Deterministic, well-scaled weights and BatchNorm statistics for every tensor of ``module``
    (but those under the prefix ``skip``)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            leaf = name.rsplit(".", 1)[-1]
            if skip and name.startswith(skip):
                continue
            if t.dtype in (torch.bool, torch.long):
                t.zero_()
            elif leaf == "running_var":
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif leaf == "running_mean" or (leaf == "bias" and t.dim() == 1):
                t.copy_((torch.rand(t.shape, generator=g) - 0.5) * 0.4)
            elif t.dim() == 1:  # norm weights
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)
    return module


@pytest.fixture(scope="module")
def resnet38d():
    """One ResNet-38d trunk with deterministic weights, shared by the psa and ICAM cases (its
    105 M parameters are the slow part of those tests)."""
    with torch.device("meta"):
        bb = build_backbone("resnet38d", output_stride=8, norm_mode="frozen_affine")
    return fill_(bb.to_empty(device="cpu"), seed=5).eval()


def toolkit_task(art, seed=0, backbone=None):
    """The task of ``art``'s config with deterministic weights (built without initialisation);
    ``backbone`` replaces the task's own, already filled."""
    conv = CONVERTERS.get(art.converter)
    task = build_task(conv.task, experiment_config(art), art.classes, meta=True).to_empty(device="cpu")
    if backbone is not None:
        setattr(task.get_submodule(conv.wrap.rstrip(".")), "backbone", backbone)
    return fill_(task, seed, skip=conv.wrap + "backbone." if backbone is not None else None).eval(), conv.task


def pnoc_stages(bb):
    """P-NOC's ``stage1..5`` aliases of a backbone (``build_backbone`` of core/networks.py)."""
    if bb.checkpoint_family == "resnet38d":
        groups = (("conv1a", "b2", "b2_1", "b2_2"), ("b3", "b3_1", "b3_2"),
                  ("b4", "b4_1", "b4_2", "b4_3", "b4_4", "b4_5"), ("b5", "b5_1", "b5_2"), ("b6", "b7", "bn7"))
        return [nn.Sequential(*[getattr(bb, n) for n in names]) for names in groups]
    return [nn.Sequential(bb.conv1, bb.bn1, nn.ReLU(), nn.MaxPool2d(3, 2, 1))] + \
        [nn.Sequential(getattr(bb, f"layer{k}")) for k in range(1, 5)]


def pnoc_trunk(bb, era):
    """The backbone part of a P-NOC network of code era A (``model`` + stage aliases), B (stage
    aliases only) or C (``backbone``)."""
    if era == "C":
        return {"backbone": bb}
    stages = {f"stage{i}": s for i, s in enumerate(pnoc_stages(bb), start=1)}
    return {"model": bb, **stages} if era == "A" else stages


def released(kind, task, era):
    """The stand-in reference network of a task (see the module docstring)."""
    if kind == "pnoc-classifier":
        return Holder(**pnoc_trunk(task.net.backbone, era), classifier=task.net.head)
    if kind == "pnoc-ccam":
        m = task.model
        return Holder(**pnoc_trunk(m.backbone, era), ac_head=Holder(activation_head=m.head_conv, bn_head=m.head_bn))
    if kind == "pnoc-affinity":
        net = task.net
        edges = {f"fc_edge{i}": getattr(net.edge, f"fc_edge{i}") for i in range(1, 7)}
        r = Holder(**pnoc_trunk(net.backbone, era), **edges, edge_layers=nn.ModuleList(edges.values()))
        if era in "AB":  # AffinityNet's nn.ModuleList of the stages: backbone.0 ... backbone.4
            r.add_module("backbone", nn.ModuleList(pnoc_stages(net.backbone)))
        r.register_buffer("path_indices_0", torch.arange(12).reshape(3, 4))
        return r
    if kind == "pnoc-deeplabv3plus":
        h = task.model.head
        aspp = Holder(**{f"aspp{n}": Holder(atrous_conv=h.aspp.branches[n - 1][0], bn=h.aspp.branches[n - 1][1])
                         for n in range(1, 5)},
                      global_avg_pool=h.aspp.pool, conv1=h.aspp.project[0], bn1=h.aspp.project[1])
        d = h.decoder
        decoder = Holder(conv1=h.low[0], bn1=h.low[1], classifier=nn.Sequential(
            d[0][0], d[0][1], nn.ReLU(), nn.Dropout(0.5), d[2][0], d[2][1], nn.ReLU(), nn.Dropout(0.1), h.classifier))
        return Holder(**pnoc_trunk(task.model.backbone, era), aspp=aspp, decoder=decoder)
    if kind == "pnoc-poolnet":  # poolnet/networks/poolnet.py + deeplab_resnet.py (ResNet_locate)
        m = task.model
        base = Holder(resnet=m.backbone, ppms_pre=m.ggm.reduce, ppms=m.ggm.pools, ppm_cat=m.ggm.fuse,
                      infos=m.ggm.guides)
        pools = nn.ModuleList(
            Holder(convs=f.convs, conv_sum=f.conv_sum, **({"conv_sum_c": f.conv_fuse} if f.conv_fuse else {}))
            for f in m.fams)
        return Holder(base=base, deep_pool=pools, score=Holder(score=m.score), convert=Holder(convert0=m.convert))
    if kind == "psa-res38-cls":  # psa network/resnet38_cls.py: the trunk's own names + fc8
        return Holder(**dict(task.net.backbone.named_children()), fc8=task.net.head)
    if kind == "icam-cam":  # ICAM network/resnet38_cam.py: the trunk's own names + fc8, f8_3, f8_4, f9
        net = task.net
        return Holder(**dict(net.backbone.named_children()), fc8=net.fc8, f8_3=net.side.f8_3, f8_4=net.side.f8_4,
                      f9=net.pcm.f9)
    if kind == "cpn":  # CPN network/resnet38_CPN.py: the trunk's own names + fc8, f8_3, f8_4, f9, f10
        n = task.net
        return Holder(**dict(n.backbone.named_children()), fc8=n.fc8, f8_3=n.side.f8_3, f8_4=n.side.f8_4,
                      f9=n.pcm.f9, f10=n.f10)
    if kind == "aeft-cam":  # AEFT networks/resnet38d.py Net_gpp: the trunk's names, fc8, bn8 (unused), fc9, gconv1..3
        net = task.net
        bn8 = fill_(nn.BatchNorm2d(net.fc8.out_channels), seed=9)
        return Holder(**dict(net.backbone.named_children()), fc8=net.fc8, bn8=bn8, fc9=net.fc9,
                      **dict(net.gpp.named_children()))
    if kind == "psa-res38-aff":  # psa network/resnet38_aff.py: the trunk's own names + f8_3/f8_4/f8_5/f9
        net = task.net
        return Holder(**dict(net.backbone.named_children()), **{n: getattr(net, n) for n in ("f8_3", "f8_4", "f8_5", "f9")})
    if kind == "icam-deeplabv1":  # YudeWang's deeplabv1 as ICAM's final.pth
        h = task.model.head
        return Holder(backbone=task.model.backbone, conv_fov=h.fov[0], bn_fov=h.fov[1], conv_fov2=h.fov2[0],
                      bn_fov2=h.fov2[1], cls_conv=h.classifier)
    raise KeyError(kind)


def forward(kind, task, x):
    with torch.no_grad():
        if kind == "cam":
            return task.cam_forward(x)
        if kind == "saliency":
            return task.model(x)["logits"] if hasattr(task.model, "head_conv") else task.model(x)
        if kind == "affinity":
            return task.net(x)
        return task.model(x)


CASES = [  # (registry name, overrides, era, input size, DataParallel prefix)
    ("pnoc/voc/pnoc-ls", SMALL, "A", 64, True),
    ("pnoc/voc/poc", SMALL, "B", 64, False),
    ("pnoc/voc/oc", SMALL, "C", 64, False),
    ("pnoc/voc/pnoc", {"model.backbone": "resnest50"}, "B", 32, False),
    ("pnoc/voc/ccamh", SMALL, "A", 64, False),
    ("pnoc/voc/ccamh", SMALL, "B", 64, False),
    ("pnoc/coco/ccamh", SMALL, "C", 64, False),
    ("pnoc/voc/affinitynet", SMALL, "A", 64, False),
    ("pnoc/voc/affinitynet", SMALL, "B", 64, False),
    ("pnoc/coco/affinitynet", SMALL, "C", 64, False),
    ("pnoc/voc/deeplab-pnoc-ls", SMALL, "A", 64, False),
    ("pnoc/voc/deeplab-poc", SMALL, "B", 64, False),
    ("pnoc/coco/deeplab-pnoc", SMALL, "C", 64, True),
    # PoolNet and ICAM's DeepLab keep their trunk under one prefix (base.resnet., backbone.), so a
    # small trunk shows the same layout; psa's file is the bare ResNet-38d (its fc8 is told apart
    # by the resnet38d family), so that case runs the real 105 M-parameter network.
    ("pnoc/voc/poolnet", {**SMALL, "model.width": 16}, None, 64, False),
    ("icam/voc/final", {**SMALL, "model.output_stride": 8}, None, 64, False),
    ("psa/voc/res38-cls", {}, None, 16, False),
    ("psa/voc/res38-aff", {}, None, 16, True),
    ("icam/voc/cam", {}, None, 16, False),
    ("cpn/voc/bundle", {}, None, 16, False),
]  # AEFT's CAM net: test_aeft_release_drops_bn8_explicitly_and_keeps_the_gates


HEAVY = ("resnest50", "psa/", "icam/voc/cam", "cpn/")  # 25 M / 105 M parameters: seconds each



@pytest.mark.parametrize("name,overrides,era,size,wrapped", [
    pytest.param(*c, id=f"{c[0]}-{c[2] or 'plain'}",
                 marks=[pytest.mark.slow] if any(h in f"{c[0]} {c[1]}" for h in HEAVY) else [])
    for c in CASES])
def test_released_layout_converts_to_the_same_network(request, tmp_path, name, overrides, era, size, wrapped):
    art = hub.get(name)
    art = dataclasses.replace(art, overrides={**art.overrides, **overrides})
    shared = request.getfixturevalue("resnet38d") if experiment_config(art)["model"]["backbone"] == "resnet38d" else None
    direct, kind = toolkit_task(art, backbone=shared)
    state = released(art.converter, direct, era).state_dict()
    if wrapped:
        state = {f"module.{k}": v for k, v in state.items()}
    src = tmp_path / "released.pth"
    torch.save(state, src)
    report = convert(art, src, tmp_path / "exp")
    assert report["layout"] == {"A": "model", "B": "stages", "C": "backbone", None: report["layout"]}[era]
    loaded = load_experiment(tmp_path / "exp", kind, art.classes)
    x = torch.randn(1 if size < 64 else 2, 3, size, size, generator=torch.Generator().manual_seed(1))
    a, b = forward(kind, direct, x), forward(kind, loaded, x)
    assert a.shape == b.shape and torch.isfinite(a).all() and a.abs().sum() > 0
    assert torch.equal(a, b)
    ckpt = torch.load(tmp_path / "exp" / "checkpoints" / "last.pth", weights_only=True)
    assert ckpt["format"] == "wsss-checkpoint-1" and ckpt["config"]["model"]["weights"] is None
    assert ckpt["source"]["name"] == name


@pytest.mark.slow
def test_an_archive_converts_the_member_it_names(resnet38d, tmp_path):
    """CPN's bundle is an archive: the converter reads its ``member`` (``**/CPN.pth``) from the
    unpacked folder; a folder without it is an error listing the checkpoints it holds."""
    art = hub.get("cpn/voc/bundle")
    assert art.container == "archive" and art.member == "**/CPN.pth"
    direct, kind = toolkit_task(art, backbone=resnet38d)
    (tmp_path / "files" / "CPN").mkdir(parents=True)
    torch.save(released("cpn", direct, None).state_dict(), tmp_path / "files" / "CPN" / "CPN.pth")
    torch.save({}, tmp_path / "files" / "init.pth")
    convert(art, tmp_path / "files", tmp_path / "exp")
    loaded = load_experiment(tmp_path / "exp", kind, art.classes)
    assert loaded.net.key_layout == "reference"   # CPN.pth was trained with the reference's key .view
    x = torch.randn(1, 3, 16, 16)
    assert torch.equal(forward(kind, direct, x), forward(kind, loaded, x))
    (tmp_path / "files" / "CPN" / "CPN.pth").unlink()
    with pytest.raises(CheckpointError, match=r"0 files match '\*\*/CPN.pth'.*init.pth"):
        convert(art, tmp_path / "files", tmp_path / "exp2")


def test_era_a_affinity_file_loads_as_backbone_weights(tmp_path):
    """The ImageNet loader's key map used to prefer ``backbone.`` (AffinityNet's digit-indexed
    stage list) over ``model.`` and failed on era-A AffinityNet files."""
    art = dataclasses.replace(hub.get("pnoc/voc/affinitynet"), overrides=SMALL)
    direct, _ = toolkit_task(art, seed=3)
    torch.save(released("pnoc-affinity", direct, "A").state_dict(), tmp_path / "aff.pth")
    bb = build_backbone("resnet18", width=8, norm_mode="frozen")
    report = load_weights(bb, tmp_path / "aff.pth")
    assert any(k.startswith("backbone.0.") for k in report["dropped"])
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(bb.eval()(x)["c5"], direct.net.backbone(x)["c5"])


@pytest.mark.parametrize("era", ["A", "B", "C"])
def test_resnet38d_stage_aliases_map_to_the_trunk(era):
    """P-NOC's ResNet-38d stage grouping (no release uses it, so keys only, on the meta device)."""
    with torch.device("meta"):
        bb = build_backbone("resnet38d", output_stride=8)
        state = Holder(**pnoc_trunk(bb, era), classifier=nn.Conv2d(4096, 20, 1, bias=False)).state_dict()
    trunk, heads, dropped, layout = split_backbone(state, "resnet38d")
    assert layout == {"A": "model", "B": "stages", "C": "backbone"}[era]
    assert sorted(trunk) == sorted(bb.state_dict()) and list(heads) == ["classifier.weight"]
    assert all(k.startswith("stage") for k in dropped) and (era == "A") == bool(dropped)


def test_unknown_keys_and_wrong_shapes_are_errors(tmp_path):
    art = dataclasses.replace(hub.get("pnoc/voc/pnoc-ls"), overrides=SMALL)
    direct, _ = toolkit_task(art)
    state = released(art.converter, direct, "C").state_dict()
    torch.save({**state, "ac_head.activation_head.weight": torch.zeros(1, 3, 3, 3)}, tmp_path / "ccam.pth")
    with pytest.raises(CheckpointError, match="does not know: ac_head.activation_head.weight"):
        convert(art, tmp_path / "ccam.pth", tmp_path / "exp1")
    coco = dataclasses.replace(art, classes=80)  # a VOC file converted as a COCO one
    torch.save(state, tmp_path / "voc.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatches \(net.head.weight: file \(20, 64, 1, 1\)"):
        convert(coco, tmp_path / "voc.pth", tmp_path / "exp2")
    assert not (tmp_path / "exp1").exists() and not (tmp_path / "exp2").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_every_convertible_artefact_builds_from_its_config():
    """Every registry entry with a converter names a config that builds (on the meta device)
    with the backbone its converter expects; module-pending rows name no converter."""
    built = set()
    for name, art in hub.registry().items():
        if art.status == "module pending":
            assert art.converter is None, name
        if not art.convertible:
            continue
        conv = CONVERTERS.get(art.converter)
        cfg = experiment_config(art)
        assert cfg["model"]["weights"] is None and "exp" not in cfg
        key = (art.converter, art.config, repr(sorted(art.overrides.items())))
        if key in built:  # the same network as an entry already built (another classes count at most)
            continue
        built.add(key)
        task = build_task(conv.task, cfg, art.classes, meta=True)
        if conv.backbone:
            assert hasattr(task.get_submodule(conv.wrap + "backbone"), "checkpoint_family"), name


@pytest.mark.slow
def test_aeft_release_drops_bn8_explicitly_and_keeps_the_gates(request, tmp_path):
    """AEFT's net_main holds ``bn8`` (defined, unused in its forward): the converter accepts and
    drops it by name (listed in the report), never by a non-strict load; the GPP gates load, so
    the logits (through GPP) match too. A Drive folder with its one checkpoint converts; any
    other unknown key is still an error."""
    art = hub.get("aeft/voc/cam")
    direct, kind = toolkit_task(art, backbone=request.getfixturevalue("resnet38d"))
    state = released(art.converter, direct, None).state_dict()
    assert "bn8.running_var" in state and "gconv3.att_n.0.weight" in state
    folder = tmp_path / "files"
    folder.mkdir()
    torch.save(state, folder / "039net_main.pth")
    (folder / ".complete").write_text("{}")
    report = convert(art, folder, tmp_path / "exp")
    assert report["layout"] == "plain" and report["file"].endswith("039net_main.pth")
    assert sorted(report["dropped"]) == sorted(k for k in state if k.startswith("bn8."))
    loaded = load_experiment(tmp_path / "exp", kind, art.classes)
    x = torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for a, b in zip(direct.net(x), loaded.net(x)):  # logits, CAMs, gated maps
            assert a.shape == b.shape and a.abs().sum() > 0 and torch.equal(a, b)
    ckpt = torch.load(tmp_path / "exp" / "checkpoints" / "last.pth", weights_only=True)
    assert ckpt["config"]["method"]["name"] == "aeft" and ckpt["config"]["model"]["weights"] is None
    torch.save({**state, "bn9.weight": torch.ones(256)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"1 unexpected \(net.backbone.bn9.weight\)"):
        convert(art, tmp_path / "other.pth", tmp_path / "exp2")
    torch.save(state, folder / "038net_main.pth")
    with pytest.raises(CheckpointError, match="exactly one checkpoint"):
        convert(art, folder, tmp_path / "exp3")
