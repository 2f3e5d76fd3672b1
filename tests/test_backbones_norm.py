"""BatchNorm modes: train, frozen (P-NOC FixedBatchNorm), frozen_affine (psa)."""

import pytest
import torch
from torch import nn

from wsss.backbones import FrozenBatchNorm2d, build_backbone, freeze_batchnorm
from wsss.errors import ConfigError


def small(norm_mode):
    torch.manual_seed(0)
    return build_backbone("resnet18", output_stride=16, norm_mode=norm_mode, width=8)


def bns(m):
    return [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]


def test_frozen_stays_in_eval_and_keeps_statistics():
    m = small("frozen").train()
    assert m.training and bns(m) and all(not bn.training for bn in bns(m))
    assert all(isinstance(bn, FrozenBatchNorm2d) for bn in bns(m))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randn(2, 3, 32, 32) * 3 + 1
    out_train = m(x)["c5"]
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats untouched
    with torch.no_grad():
        assert torch.allclose(out_train, m.eval()(x)["c5"])
    # P-NOC's FixedBatchNorm: affine parameters remain trainable and receive gradients.
    m.train()
    out_train.sum().backward()
    assert all(bn.weight.requires_grad and bn.weight.grad is not None for bn in bns(m))


def test_frozen_affine_freezes_weight_and_bias_too():
    m = small("frozen_affine").train()
    assert all(not bn.training for bn in bns(m))
    assert all(not bn.weight.requires_grad and not bn.bias.requires_grad for bn in bns(m))
    convs = [p for n, p in m.named_parameters() if "conv" in n]
    assert convs and all(p.requires_grad for p in convs)


def test_train_mode_updates_statistics():
    m = small("train").train()
    assert all(bn.training and type(bn) is nn.BatchNorm2d for bn in bns(m))
    mean = m.bn1.running_mean.clone()
    m(torch.randn(2, 3, 32, 32) + 2)
    assert not torch.equal(mean, m.bn1.running_mean)


def test_modes_share_state_dict_layout():
    layouts = {mode: {k: tuple(v.shape) for k, v in small(mode).state_dict().items()}
               for mode in ("train", "frozen", "frozen_affine")}
    assert layouts["train"] == layouts["frozen"] == layouts["frozen_affine"]


def test_freeze_batchnorm_converts_in_place_with_state():
    torch.manual_seed(0)
    head = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    head[1].running_mean.uniform_()
    head[2][0].running_var.uniform_(1, 2)
    ref = {k: v.clone() for k, v in head.state_dict().items()}
    freeze_batchnorm(head, trainable_affine=False).train()
    assert isinstance(head[1], FrozenBatchNorm2d) and isinstance(head[2][0], FrozenBatchNorm2d)
    assert not head[1].training and not head[1].weight.requires_grad
    assert all(torch.equal(ref[k], v) for k, v in head.state_dict().items())


def test_unknown_norm_mode():
    with pytest.raises(ConfigError, match="frozen_affine"):
        build_backbone("resnet18", norm_mode="fix")
