"""ResNet-18/50/101: torchvision key layout, parameter counts, dilation rule, feature strides."""

import pytest
import torch

from wsss.backbones import BACKBONES, build_backbone
from wsss.backbones.resnet import stage_plan
from wsss.errors import ConfigError

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
DEPTHS = {"resnet18": [2, 2, 2, 2], "resnet50": [3, 4, 6, 3], "resnet101": [3, 4, 23, 3]}


def torchvision_keys(depths, bottleneck):
    """torchvision's ResNet state-dict keys without ``fc``, written out from its layout."""
    keys = ["conv1.weight"] + [f"bn1.{s}" for s in BN]
    convs = (1, 2, 3) if bottleneck else (1, 2)
    for layer, n in enumerate(depths, start=1):
        for b in range(n):
            p = f"layer{layer}.{b}"
            for c in convs:
                keys += [f"{p}.conv{c}.weight"] + [f"{p}.bn{c}.{s}" for s in BN]
            if b == 0 and (bottleneck or layer > 1):
                keys += [f"{p}.downsample.0.weight"] + [f"{p}.downsample.1.{s}" for s in BN]
    return keys


def meta_backbone(name, **kw):
    with torch.device("meta"):
        return build_backbone(name, **kw)


@pytest.mark.parametrize("name", sorted(DEPTHS))
def test_keys_match_torchvision_layout(name):
    keys = list(meta_backbone(name).state_dict())
    assert keys == torchvision_keys(DEPTHS[name], name != "resnet18")


@pytest.mark.parametrize("name,count,nkeys", [
    ("resnet18", 11_689_512 - 513_000, 120),  # torchvision totals minus fc (512*1000 + 1000)
    ("resnet50", 23_508_032, 318),
    ("resnet101", 42_500_160, 624),
])
def test_parameter_counts(name, count, nkeys):
    m = meta_backbone(name)
    assert sum(p.numel() for p in m.parameters()) == count
    assert len(m.state_dict()) == nkeys


def test_key_shapes_resnet50():
    sd = meta_backbone("resnet50").state_dict()
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["layer3.5.conv2.weight"].shape == (256, 256, 3, 3)
    assert sd["layer4.2.bn3.running_var"].shape == (2048,)


def test_stage_plan_follows_torchvision_rule():
    assert stage_plan(32) == [(1, 1, 1), (2, 1, 1), (2, 1, 1), (2, 1, 1)]
    assert stage_plan(16) == [(1, 1, 1), (2, 1, 1), (2, 1, 1), (1, 2, 1)]
    assert stage_plan(8) == [(1, 1, 1), (2, 1, 1), (1, 2, 1), (1, 4, 2)]
    with pytest.raises(ConfigError):
        stage_plan(4)


def conv2_attr(model, layer, attr):
    return [getattr(block.conv2, attr)[0] for block in getattr(model, layer)]


@pytest.mark.parametrize("name", ["resnet50", "resnet101"])
def test_dilation_pattern_of_every_conv(name):
    n3 = DEPTHS[name][2]
    os16 = meta_backbone(name, output_stride=16)
    assert conv2_attr(os16, "layer3", "dilation") == [1] * n3
    assert conv2_attr(os16, "layer3", "stride") == [2] + [1] * (n3 - 1)
    assert conv2_attr(os16, "layer4", "dilation") == [1, 2, 2]
    assert conv2_attr(os16, "layer4", "padding") == [1, 2, 2]
    assert conv2_attr(os16, "layer4", "stride") == [1, 1, 1]
    assert os16.layer4[0].downsample[0].stride == (1, 1)
    os8 = meta_backbone(name, output_stride=8)
    assert conv2_attr(os8, "layer3", "dilation") == [1] + [2] * (n3 - 1)
    assert conv2_attr(os8, "layer3", "stride") == [1] * n3
    assert conv2_attr(os8, "layer4", "dilation") == [2, 4, 4]
    assert os8.layer3[0].downsample[0].stride == (1, 1)
    # 1x1 convs are never dilated.
    assert all(m.dilation == (1, 1) for m in os8.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1))


def test_resnet18_basic_blocks_dilate_both_convs():
    m = meta_backbone("resnet18", output_stride=8)
    assert [(b.conv1.dilation[0], b.conv2.dilation[0]) for b in m.layer3] == [(1, 1), (2, 2)]
    assert [(b.conv1.dilation[0], b.conv2.dilation[0]) for b in m.layer4] == [(2, 2), (4, 4)]


@pytest.mark.parametrize("name", sorted(DEPTHS))
@pytest.mark.parametrize("os_", [8, 16])
def test_feature_strides_and_channels(name, os_):
    m = meta_backbone(name, output_stride=os_)
    feats = m(torch.empty(2, 3, 64, 96, device="meta"))
    e = 1 if name == "resnet18" else 4
    expect_ch = {"c1": 64, "c2": 64 * e, "c3": 128 * e, "c4": 256 * e, "c5": 512 * e}
    expect_stride = {"c1": 2, "c2": 4, "c3": 8, "c4": min(16, os_), "c5": os_}
    assert m.channels == expect_ch and m.strides == expect_stride and m.output_stride == os_
    for k, f in feats.items():
        assert f.shape == (2, expect_ch[k], 64 // expect_stride[k], 96 // expect_stride[k]), k


def test_real_forward_resnet18_width():
    torch.manual_seed(0)
    m = build_backbone("resnet18", output_stride=8, width=16).eval()
    assert m.channels == {"c1": 16, "c2": 16, "c3": 32, "c4": 64, "c5": 128}
    with torch.no_grad():
        f = m(torch.randn(1, 3, 64, 64))
    assert f["c5"].shape == (1, 128, 8, 8)
    assert torch.isfinite(f["c5"]).all() and (f["c5"] >= 0).all()  # after the final ReLU
    # Odd sizes round up like torchvision (padding 1, stride 2): 65 -> 33 -> 17 -> 9.
    with torch.no_grad():
        assert m(torch.randn(1, 3, 65, 65))["c3"].shape[-1] == 9


def test_registry_and_config_errors():
    assert set(BACKBONES.names()) == {"resnet18", "resnet50", "resnet101", "resnest50", "resnest101",
                                      "resnest200", "resnest269", "resnet38d"}
    with pytest.raises(ConfigError, match="resnet5"):
        build_backbone("resnet5")
    with pytest.raises(ConfigError, match="width"):
        meta_backbone("resnet50", width=32)
    with pytest.raises(ConfigError, match="output_stride"):
        meta_backbone("resnet50", output_stride=12)


def test_undilated_last_stage_puzzlecam_layout():
    """``dilate_last=False``: layer4 keeps stride 1 and dilation 1 everywhere (Puzzle-CAM's /
    SP-CAM's ResNet-50, strides (2, 2, 2, 1)), same torchvision keys, same weights load, c5 at
    stride 16."""
    m = meta_backbone("resnet50", output_stride=16, dilate_last=False)
    assert list(m.state_dict()) == torchvision_keys(DEPTHS["resnet50"], True)
    assert conv2_attr(m, "layer4", "dilation") == [1, 1, 1]
    assert conv2_attr(m, "layer4", "padding") == [1, 1, 1]
    assert conv2_attr(m, "layer4", "stride") == [1, 1, 1]
    assert conv2_attr(m, "layer3", "stride") == [2] + [1] * 5
    assert m.strides["c5"] == 16
    assert stage_plan(16, dilate_last=False) == [(1, 1, 1), (2, 1, 1), (2, 1, 1), (1, 1, 1)]
    with pytest.raises(ConfigError, match="output stride 16"):
        stage_plan(8, dilate_last=False)
    # same weights, different receptive field: the outputs differ, the stem/layer1-3 do not
    torch.manual_seed(0)
    a = build_backbone("resnet18", output_stride=16, width=8).eval()
    b = build_backbone("resnet18", output_stride=16, width=8, dilate_last=False).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        fa, fb = a(x), b(x)
    assert torch.equal(fa["c4"], fb["c4"]) and not torch.allclose(fa["c5"], fb["c5"])
    assert [(blk.conv1.dilation[0], blk.conv2.dilation[0]) for blk in b.layer4] == [(1, 1), (1, 1)]
