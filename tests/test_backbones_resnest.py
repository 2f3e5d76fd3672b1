"""ResNeSt-50/101/200/269: official key layout, published parameter counts, avd/avg-down
pooling, dilation rule, split-attention arithmetic."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsss.backbones import build_backbone
from wsss.backbones.resnest import SplitAttentionConv2d

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
CONFIGS = {  # depths and stem width of the official model definitions
    "resnest50": ([3, 4, 6, 3], 32),
    "resnest101": ([3, 4, 23, 3], 64),
    "resnest200": ([3, 24, 36, 3], 64),
    "resnest269": ([3, 30, 48, 8], 64),
}
# Published totals with the 1000-way fc (ResNeSt/GluonCV model zoo), in millions.
PUBLISHED_M = {"resnest50": 27.48, "resnest101": 48.28, "resnest200": 70.2, "resnest269": 110.93}
FC = 2048 * 1000 + 1000


def official_keys(depths):
    """Official ResNeSt state-dict keys without ``fc``, written out from its layout."""
    keys = []
    for i in (0, 1, 3, 4, 6):
        keys += [f"conv1.{i}.weight"] if i in (0, 3, 6) else [f"conv1.{i}.{s}" for s in BN]
    keys += [f"bn1.{s}" for s in BN]
    for layer, n in enumerate(depths, start=1):
        for b in range(n):
            p = f"layer{layer}.{b}"
            keys += [f"{p}.conv1.weight"] + [f"{p}.bn1.{s}" for s in BN]
            keys += [f"{p}.conv2.conv.weight"] + [f"{p}.conv2.bn0.{s}" for s in BN]
            keys += [f"{p}.conv2.fc1.weight", f"{p}.conv2.fc1.bias"] + [f"{p}.conv2.bn1.{s}" for s in BN]
            keys += [f"{p}.conv2.fc2.weight", f"{p}.conv2.fc2.bias"]
            keys += [f"{p}.conv3.weight"] + [f"{p}.bn3.{s}" for s in BN]
            if b == 0:
                keys += [f"{p}.downsample.1.weight"] + [f"{p}.downsample.2.{s}" for s in BN]
    return keys


def meta_backbone(name, **kw):
    with torch.device("meta"):
        return build_backbone(name, **kw)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_keys_and_published_parameter_counts(name):
    m = meta_backbone(name)
    sd = m.state_dict()
    assert sorted(sd) == sorted(official_keys(CONFIGS[name][0]))
    total = sum(p.numel() for p in m.parameters()) + FC
    assert abs(total / 1e6 - PUBLISHED_M[name]) < 0.005 + 1e-9, total
    sw = CONFIGS[name][1]
    assert sd["conv1.0.weight"].shape == (sw, 3, 3, 3)
    assert sd["conv1.3.weight"].shape == (sw, sw, 3, 3)
    assert sd["conv1.6.weight"].shape == (2 * sw, sw, 3, 3)
    assert sd["bn1.weight"].shape == (2 * sw,)
    assert m.channels["c1"] == 2 * sw


def test_split_attention_shapes():
    sd = meta_backbone("resnest50").state_dict()
    # planes 128 in layer2: grouped conv 128 -> 256 with 2 groups; fc1 to max(128*2//4, 32) = 64.
    assert sd["layer2.0.conv2.conv.weight"].shape == (256, 64, 3, 3)
    assert sd["layer2.0.conv2.bn0.weight"].shape == (256,)
    assert sd["layer2.0.conv2.fc1.weight"].shape == (64, 128, 1, 1)
    assert sd["layer2.0.conv2.fc1.bias"].shape == (64,)
    assert sd["layer2.0.conv2.fc2.weight"].shape == (256, 64, 1, 1)
    assert sd["layer1.0.conv2.fc1.weight"].shape == (32, 64, 1, 1)  # 64*2//4 = 32
    assert sd["layer4.2.conv2.fc1.bias"].shape == (256,)
    assert sd["layer1.0.downsample.1.weight"].shape == (256, 64, 1, 1)


def pool_args(p):
    return (p.kernel_size, p.stride, p.padding, p.ceil_mode, p.count_include_pad)


@pytest.mark.parametrize("os_", [32, 16, 8])
def test_avd_and_avg_down_pooling(os_):
    m = meta_backbone("resnest50", output_stride=os_)
    strides = {"layer2": 2, "layer3": 2 if os_ >= 16 else 1, "layer4": 2 if os_ == 32 else 1}
    assert m.layer1[0].avd_layer is None
    assert pool_args(m.layer1[0].downsample[0]) == (1, 1, 0, True, False)
    for layer, s in strides.items():
        blocks = getattr(m, layer)
        # avd in the first block of every later stage, a 3x3 blur even where the stage no longer strides
        assert pool_args(blocks[0].avd_layer) == (3, s, 1, False, True)
        assert blocks[0].conv2.conv.stride == (1, 1)
        assert all(b.avd_layer is None for b in blocks[1:])
        assert pool_args(blocks[0].downsample[0]) == (s, s, 0, True, False)
        assert blocks[0].downsample[1].stride == (1, 1)


@pytest.mark.parametrize("name", ["resnest50", "resnest269"])
def test_dilation_pattern_of_every_conv(name):
    depths = CONFIGS[name][0]

    def dil(m, layer):
        return [b.conv2.conv.dilation[0] for b in getattr(m, layer)]

    os16 = meta_backbone(name, output_stride=16)
    assert dil(os16, "layer3") == [1] * depths[2]
    assert dil(os16, "layer4") == [1] + [2] * (depths[3] - 1)
    assert [b.conv2.conv.padding[0] for b in os16.layer4] == dil(os16, "layer4")
    os8 = meta_backbone(name, output_stride=8)
    assert dil(os8, "layer3") == [1] + [2] * (depths[2] - 1)
    assert dil(os8, "layer4") == [2] + [4] * (depths[3] - 1)


def expected_shapes(c1, os_, size=64):
    return {"c1": (c1, size // 2, size // 2), "c2": (256, size // 4, size // 4), "c3": (512, size // 8, size // 8),
            "c4": (1024, size // min(16, os_), size // min(16, os_)), "c5": (2048, size // os_, size // os_)}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("os_", [8, 16])
def test_declared_strides_and_channels(name, os_):
    m = meta_backbone(name, output_stride=os_)
    assert m.strides == {"c1": 2, "c2": 4, "c3": 8, "c4": min(16, os_), "c5": os_}
    assert m.channels == {"c1": 2 * CONFIGS[name][1], "c2": 256, "c3": 512, "c4": 1024, "c5": 2048}


@pytest.mark.parametrize("name", ["resnest50", "resnest101"])
@pytest.mark.parametrize("os_", [8, 16])
def test_feature_shapes(name, os_):
    m = meta_backbone(name, output_stride=os_)
    feats = m(torch.empty(2, 3, 64, 64, device="meta"))
    assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == expected_shapes(m.channels["c1"], os_)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnest200", "resnest269"])
def test_feature_shapes_deep_models_real_forward(name):
    torch.manual_seed(0)
    for os_ in (8, 16):
        m = build_backbone(name, output_stride=os_).eval()
        with torch.no_grad():
            feats = m(torch.randn(1, 3, 32, 32))
        assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == expected_shapes(128, os_, size=32)
        assert torch.isfinite(feats["c5"]).all()


def test_avg_down_handles_odd_sizes_with_ceil_mode():
    torch.manual_seed(0)
    m = build_backbone("resnest50", output_stride=32).eval()
    with torch.no_grad():
        f = m(torch.randn(1, 3, 50, 70))
    # 50 -> 25 -> 13 -> 7 -> 4 -> 2 on both the avd and the avg-down (ceil) paths
    assert f["c5"].shape == (1, 2048, 2, 3) and torch.isfinite(f["c5"]).all()


def test_split_attention_matches_explicit_formula():
    torch.manual_seed(0)
    sa = SplitAttentionConv2d(8, stride=1, dilation=1, norm_layer=nn.BatchNorm2d, radix=2).eval()
    for bn in (sa.bn0, sa.bn1):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 8, 5, 6)
    with torch.no_grad():
        u = F.relu(sa.bn0(sa.conv(x)))
        u1, u2 = u[:, :8], u[:, 8:]  # the two radix splits
        s = (u1 + u2).mean((2, 3), keepdim=True)
        z = sa.fc2(F.relu(sa.bn1(sa.fc1(s))))
        a1 = torch.exp(z[:, :8]) / (torch.exp(z[:, :8]) + torch.exp(z[:, 8:]))
        expected = a1 * u1 + (1 - a1) * u2
        assert torch.allclose(sa(x), expected, atol=1e-6)
