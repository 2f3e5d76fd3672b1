"""DeepLab v1/v2/v3+ heads: output shapes and strides, ASPP structure, config handling."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from wsss.errors import CheckpointError, ConfigError
from wsss.segmentation import MODELS, build_segmentation_model
from wsss.segmentation.heads import ASPPv2Head


class TinyBackbone(nn.Module):
    """Stand-in for ``wsss.backbones``: c2 at stride 4, c3 at 8, c4 at 16 (8), c5 at the OS."""

    def __init__(self, output_stride=16, width=8):
        super().__init__()
        s4 = 1 if output_stride == 8 else 2
        self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.layer2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.layer3 = nn.Conv2d(2 * width, 4 * width, 3, stride=s4, padding=1)
        self.layer4 = nn.Conv2d(4 * width, 8 * width, 3, padding=1)
        self.channels = {"c2": width, "c3": 2 * width, "c4": 4 * width, "c5": 8 * width}

    def forward(self, x):
        c2 = F.relu(self.layer1(F.relu(self.bn1(self.conv1(x)))))
        c3 = F.relu(self.layer2(c2))
        c4 = F.relu(self.layer3(c3))
        return {"c2": c2, "c3": c3, "c4": c4, "c5": F.relu(self.layer4(c4))}


def make_model(name, output_stride=16, num_outputs=5, **model_cfg):
    cfg = {"name": name, "output_stride": output_stride, **model_cfg}
    return build_segmentation_model(cfg, num_outputs, backbone=TinyBackbone(output_stride))


def test_registry_names():
    assert MODELS.names() == ["deeplabv1", "deeplabv2", "deeplabv3plus"]
    with pytest.raises(ConfigError, match="deeplabv3plus"):
        make_model("deeplabv4")


@pytest.mark.parametrize("name,os_,stride", [
    ("deeplabv1", 8, 8), ("deeplabv1", 16, 16), ("deeplabv2", 8, 8), ("deeplabv2", 16, 16),
    ("deeplabv3plus", 16, 4), ("deeplabv3plus", 8, 4)])
@pytest.mark.parametrize("hw", [(64, 64), (65, 47)])
def test_output_shapes_and_strides(name, os_, stride, hw):
    model = make_model(name, output_stride=os_).eval()
    x = torch.randn(2, 3, *hw)
    raw = model.forward_logits(x)
    assert model.logit_stride == stride
    assert raw.shape == (2, 5, math.ceil(hw[0] / stride), math.ceil(hw[1] / stride))
    assert model(x).shape == (2, 5, *hw)


def test_v2_aspp_is_sum_of_four_dilated_convs():
    head = ASPPv2Head(16, 3)
    assert [c.dilation[0] for c in head.branches] == [6, 12, 18, 24]
    for c in head.branches:  # give the zero-initialised biases distinct values
        nn.init.normal_(c.bias)
    x = torch.randn(1, 16, 30, 30)
    want = sum(F.conv2d(x, c.weight, c.bias, padding=r, dilation=r)
               for c, r in zip(head.branches, (6, 12, 18, 24)))
    torch.testing.assert_close(head({"c5": x}), want)


def test_v3plus_aspp_and_decoder_layout():
    model = make_model("deeplabv3plus", output_stride=16)
    head = model.head
    dil = [b[0].dilation[0] for b in head.aspp.branches]
    ks = [b[0].kernel_size[0] for b in head.aspp.branches]
    assert dil == [1, 6, 12, 18] and ks == [1, 3, 3, 3]
    assert head.aspp.project[0].in_channels == 5 * 256 and head.aspp.project[0].out_channels == 256
    assert head.low[0].in_channels == 8 and head.low[0].out_channels == 48  # c2 -> 48
    assert head.decoder[0][0].in_channels == 256 + 48
    assert head.classifier.out_channels == 5
    os8 = make_model("deeplabv3plus", output_stride=8).head
    assert [b[0].dilation[0] for b in os8.aspp.branches] == [1, 12, 24, 36]


def test_v3plus_group_norm_option():
    head = make_model("deeplabv3plus", head={"norm": "gn"}).head
    norms = [m for m in head.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    assert norms and all(isinstance(m, nn.GroupNorm) and m.num_groups == 4 for m in norms)
    # GroupNorm makes the head independent of the other images in the batch.
    model = make_model("deeplabv3plus", head={"norm": "gn"}).train()
    torch.manual_seed(0)
    model.backbone.eval()
    for m in model.head.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(model(x)[:1], model(x[:1]))


def test_v1_head_layout():
    head = make_model("deeplabv1", output_stride=8).head
    assert head.fov[0].dilation[0] == 12 and head.fov[0].out_channels == 512
    assert head.fov2[0].kernel_size[0] == 1 and head.classifier.out_channels == 5


def test_image_pooling_branch_sees_whole_image():
    # With small rates the far corner of a 128 px output is outside every local receptive field
    # of a change in the opposite corner; only the ASPP's global pooling branch carries it.
    torch.manual_seed(0)
    x = torch.randn(1, 3, 128, 128)
    y = x.clone()
    y[..., :8, :8] += 5.0
    v3 = make_model("deeplabv3plus", head={"rates": [1, 1, 1]}).eval()
    far = lambda m, t: m(t)[..., -8:, -8:]  # noqa: E731
    assert (far(v3, x) - far(v3, y)).abs().max() > 1e-5
    nn.init.zeros_(v3.head.aspp.pool[1].weight)
    torch.testing.assert_close(far(v3, x), far(v3, y))


def test_frozen_prefixes_and_bad_options():
    model = make_model("deeplabv3plus", frozen_prefixes=["conv1.", "bn1."])
    frozen = {n for n, p in model.backbone.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias"}
    model.train()  # a frozen stem also keeps its BatchNorm statistics (P-NOC's not_training)
    assert not model.backbone.bn1.training and model.backbone.layer1.training and model.head.training
    before = model.backbone.bn1.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(model.backbone.bn1.running_mean, before)
    with pytest.raises(ConfigError, match="stem"):
        make_model("deeplabv3plus", frozen_prefixes=["stem."])
    with pytest.raises(ConfigError, match="head options"):
        make_model("deeplabv2", head={"norm": "gn"})
    with pytest.raises(ConfigError, match="unknown segmentation head norm"):
        make_model("deeplabv3plus", head={"norm": "ln"})


def test_backbone_init_from_another_stage_checkpoint(tmp_path):
    from wsss.engine import save_checkpoint
    from wsss.errors import CheckpointError

    torch.manual_seed(1)
    cam_net, oc_net = TinyBackbone(), TinyBackbone()
    state = {**{f"net.backbone.{k}": v for k, v in cam_net.state_dict().items()},
             **{f"oc.backbone.{k}": v for k, v in oc_net.state_dict().items()}, "net.head.weight": torch.zeros(1)}
    save_checkpoint(tmp_path / "two.pth", {"state_dict": state})
    save_checkpoint(tmp_path / "one.pth", {"state_dict": {k: v for k, v in state.items() if k.startswith("net.")}})
    model = make_model("deeplabv2", backbone_init=str(tmp_path / "one.pth"))
    torch.testing.assert_close(model.backbone.layer4.weight, cam_net.layer4.weight)
    with pytest.raises(CheckpointError, match="several backbones"):
        make_model("deeplabv2", backbone_init=str(tmp_path / "two.pth"))
    model = make_model("deeplabv2", backbone_init=str(tmp_path / "two.pth"), backbone_init_prefix="oc.backbone.")
    torch.testing.assert_close(model.backbone.layer4.weight, oc_net.layer4.weight)
    save_checkpoint(tmp_path / "other.pth", {"state_dict": {"x.conv1.weight": torch.zeros(1)}})
    with pytest.raises(CheckpointError, match="no complete set"):
        make_model("deeplabv2", backbone_init=str(tmp_path / "other.pth"))
