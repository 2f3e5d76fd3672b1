"""psa's ResNet-38d: key layout, parameter count by hand, dilations, pre-activation outputs."""

import pytest
import torch
import torch.nn.functional as F

from wsss.backbones import build_backbone
from wsss.backbones.resnet38d import PreActBlock
from wsss.errors import ConfigError

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# (name, cin, mid, cout, has conv_branch1) of psa's basic blocks, then its two bottlenecks.
BASIC = [("b2", 64, 128, 128, True), ("b2_1", 128, 128, 128, False), ("b2_2", 128, 128, 128, False),
         ("b3", 128, 256, 256, True), ("b3_1", 256, 256, 256, False), ("b3_2", 256, 256, 256, False),
         ("b4", 256, 512, 512, True)] + [(f"b4_{i}", 512, 512, 512, False) for i in range(1, 6)] + [
         ("b5", 512, 512, 1024, True), ("b5_1", 1024, 512, 1024, False), ("b5_2", 1024, 512, 1024, False)]
BOTTLENECK = [("b6", 1024, 2048), ("b7", 2048, 4096)]


def psa_keys():
    keys = ["conv1a.weight"]
    for name, _, _, _, proj in BASIC:
        keys += [f"{name}.bn_branch2a.{s}" for s in BN] + [f"{name}.conv_branch2a.weight"]
        keys += [f"{name}.bn_branch2b1.{s}" for s in BN] + [f"{name}.conv_branch2b1.weight"]
        keys += [f"{name}.conv_branch1.weight"] if proj else []
    for name, _, _ in BOTTLENECK:
        for br in ("2a", "2b1", "2b2"):
            keys += [f"{name}.bn_branch{br}.{s}" for s in BN] + [f"{name}.conv_branch{br}.weight"]
        keys += [f"{name}.conv_branch1.weight"]
    return keys + [f"bn7.{s}" for s in BN]


def psa_param_count():
    n = 3 * 64 * 9
    for _, cin, mid, cout, proj in BASIC:
        n += 2 * cin + cin * mid * 9 + 2 * mid + mid * cout * 9 + (cin * cout if proj else 0)
    for _, cin, cout in BOTTLENECK:
        q, h = cout // 4, cout // 2
        n += 2 * cin + cin * q + 2 * q + q * h * 9 + 2 * h + h * cout + cin * cout
    return n + 2 * 4096


@pytest.fixture(scope="module")
def meta_model():
    with torch.device("meta"):
        return build_backbone("resnet38d", output_stride=8)


def test_keys_and_parameter_count(meta_model):
    sd = meta_model.state_dict()
    assert sorted(sd) == sorted(psa_keys())
    assert sum(p.numel() for p in meta_model.parameters()) == psa_param_count() == 105_070_912
    assert sd["b4_5.conv_branch2b1.weight"].shape == (512, 512, 3, 3)
    assert sd["b6.conv_branch2b1.weight"].shape == (1024, 512, 3, 3)
    assert sd["b7.conv_branch2b2.weight"].shape == (4096, 2048, 1, 1)
    assert sd["bn7.running_var"].shape == (4096,)
    assert sd["conv1a.weight"].shape == (64, 3, 3, 3)


def test_strides_and_dilations_of_every_conv(meta_model):
    m = meta_model
    assert m.conv1a.stride == (1, 1) and m.conv1a.padding == (1, 1)
    for name, *_ in BASIC:
        block = getattr(m, name)
        s = 2 if name in ("b2", "b3", "b4") else 1
        d2a, d2b = {"b5": (1, 2), "b5_1": (2, 2), "b5_2": (2, 2)}.get(name, (1, 1))
        assert (block.conv_branch2a.stride[0], block.conv_branch2a.dilation[0], block.conv_branch2a.padding[0]) == (s, d2a, d2a)
        assert (block.conv_branch2b1.stride[0], block.conv_branch2b1.dilation[0]) == (1, d2b)
        if hasattr(block, "conv_branch1"):
            assert block.conv_branch1.stride[0] == s
    for name, p in (("b6", 0.3), ("b7", 0.5)):
        block = getattr(m, name)
        assert block.conv_branch2a.kernel_size == (1, 1) and block.conv_branch2b2.kernel_size == (1, 1)
        assert (block.conv_branch2b1.dilation[0], block.conv_branch2b1.padding[0]) == (4, 4)
        assert isinstance(block.dropout_2b1, torch.nn.Dropout2d) and block.dropout_2b1.p == p
        assert block.dropout_2b2.p == p


def test_output_stride_8_only():
    with pytest.raises(ConfigError, match="output stride 8"):
        build_backbone("resnet38d", output_stride=16)


def test_dropout_rates_of_b6_b7():
    """psa: 0.3 / 0.5; AEFT builds its trunk with 0.2 in both (model.backbone_kwargs.dropouts)."""
    with torch.device("meta"):
        m = build_backbone("resnet38d", output_stride=8, dropouts=[0.2, 0.2])
    assert [d.p for b in (m.b6, m.b7) for d in (b.dropout_2b1, b.dropout_2b2)] == [0.2] * 4
    with pytest.raises(ConfigError, match="two rates"):
        build_backbone("resnet38d", output_stride=8, dropouts=[0.2])


def test_conv1a_frozen_like_psa():
    with torch.device("meta"):
        assert not build_backbone("resnet38d", output_stride=8).conv1a.weight.requires_grad
        assert build_backbone("resnet38d", output_stride=8, trainable_conv1a=True).conv1a.weight.requires_grad


@pytest.fixture(scope="module")
def real_features():
    torch.manual_seed(0)
    m = build_backbone("resnet38d", output_stride=8).eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        return m, x, m(x)


def test_feature_shapes(real_features):
    m, x, f = real_features
    assert set(f) == set(m.channels) == set(m.strides)
    for k, t in f.items():
        assert t.shape == (1, m.channels[k], 40 // m.strides[k], 48 // m.strides[k]), k
    assert m.channels["c5"] == 4096 and m.strides["c5"] == 8


def test_pre_activations_are_psa_conv4_conv5(real_features):
    m, x, f = real_features
    with torch.no_grad():
        assert torch.allclose(f["b5_pre"], F.relu(m.b5.bn_branch2a(f["c3"])))
        assert torch.allclose(f["b6_pre"], F.relu(m.b6.bn_branch2a(f["c4"])))
        assert torch.allclose(f["b4_pre"], F.relu(m.b4.bn_branch2a(f["c2"])))
        assert (f["c5"] >= 0).all()


def test_same_shape_block_adds_raw_input():
    torch.manual_seed(0)
    block = PreActBlock(32, 32, 32, torch.nn.BatchNorm2d).eval()
    assert not hasattr(block, "conv_branch1")
    x = torch.randn(1, 32, 5, 6)
    with torch.no_grad():
        block.conv_branch2b1.weight.zero_()
        out, pre = block(x)
    assert torch.equal(out, x)  # identity shortcut of the raw (not pre-activated) input
    assert torch.allclose(pre, F.relu(block.bn_branch2a(x)))
