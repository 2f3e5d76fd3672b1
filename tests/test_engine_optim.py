import pytest
import torch
from torch import nn

from wsss.engine import build_optimizer, frozen_call, param_groups_4, poly_factor, set_poly_lr, shard
from wsss.engine.optim import optimizer_settings
from wsss.errors import ConfigError


def test_poly_factor_known_values():
    assert poly_factor(0, 100) == 1.0
    assert poly_factor(50, 100) == pytest.approx(0.5 ** 0.9)
    assert poly_factor(75, 100, power=1.0) == pytest.approx(0.25)
    assert poly_factor(100, 100) == 0.0 and poly_factor(150, 100) == 0.0


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=True)
        self.bn = nn.BatchNorm2d(4)
        self.stem = nn.Conv2d(3, 3, 1)
        self.stem.requires_grad_(False)  # frozen stem: in no group


def test_param_groups_4_membership_multipliers_and_decay():
    bb, head, extra = Backbone(), nn.Conv2d(4, 5, 1, bias=False), nn.Linear(5, 2)
    groups = {g["name"]: g for g in param_groups_4(bb, [head, extra])}
    ids = lambda ps: {id(p) for p in ps}
    assert ids(groups["backbone.weight"]["params"]) == ids([bb.conv.weight, bb.bn.weight])
    assert ids(groups["backbone.bias"]["params"]) == ids([bb.conv.bias, bb.bn.bias])
    assert ids(groups["new.weight"]["params"]) == ids([head.weight, extra.weight])
    assert ids(groups["new.bias"]["params"]) == ids([extra.bias])
    assert [groups[n]["lr_mult"] for n in ("backbone.weight", "backbone.bias", "new.weight", "new.bias")] == [1, 2, 10, 20]
    assert "weight_decay" not in groups["backbone.weight"] and groups["backbone.bias"]["weight_decay"] == 0.0
    assert groups["new.bias"]["weight_decay"] == 0.0

    opt = build_optimizer("main", list(groups.values()),
                          {"type": "sgd", "lr": 0.1, "weight_decay": 1e-4, "momentum": 0.9, "nesterov": True})
    assert isinstance(opt, torch.optim.SGD)
    by_name = {g["name"]: g for g in opt.param_groups}
    assert {n: g["lr"] for n, g in by_name.items()} == pytest.approx(
        {"backbone.weight": 0.1, "backbone.bias": 0.2, "new.weight": 1.0, "new.bias": 2.0})
    assert {n: g["weight_decay"] for n, g in by_name.items()} == {
        "backbone.weight": 1e-4, "backbone.bias": 0.0, "new.weight": 1e-4, "new.bias": 0.0}
    assert all(g["momentum"] == 0.9 and g["nesterov"] for g in opt.param_groups)
    set_poly_lr(opt, 50, 100)
    assert by_name["new.bias"]["lr"] == pytest.approx(2.0 * 0.5 ** 0.9)


def test_new_layers_inside_backbone_are_not_counted_twice():
    bb = Backbone()
    groups = param_groups_4(bb, bb.conv)
    seen = [id(p) for g in groups for p in g["params"]]
    assert len(seen) == len(set(seen)) == 4


def test_per_optimizer_overrides_and_errors():
    train = {"lr": 0.1, "weight_decay": 1e-4, "momentum": 0.9, "optimizers": {"noc": {"lr": 0.01, "momentum": 0.0}}}
    assert optimizer_settings(train, "main")["lr"] == 0.1
    s = optimizer_settings(train, "noc")
    assert s["lr"] == 0.01 and s["momentum"] == 0.0 and s["weight_decay"] == 1e-4
    with pytest.raises(ConfigError):
        optimizer_settings({"optimizers": {"x": {"learning_rate": 1}}}, "x")
    with pytest.raises(ConfigError):
        build_optimizer("main", [{"params": [nn.Parameter(torch.ones(1))]}],
                        {"type": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": True})
    with pytest.raises(ConfigError):
        build_optimizer("main", [{"params": [nn.Parameter(torch.ones(1))]}], {"type": "lbfgs", "lr": 0.1})


def test_frozen_call_grads_reach_inputs_only():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(5, 3, requires_grad=True)
    y = frozen_call(m, x)
    assert torch.equal(y, m(x))
    y.square().sum().backward()
    assert all(p.grad is None for p in m.parameters())
    x_ref = x.detach().clone().requires_grad_(True)
    m(x_ref).square().sum().backward()
    assert torch.allclose(x.grad, x_ref.grad)


def test_shard_is_a_partition():
    items = list(range(11))
    parts = [shard(items, r, 3) for r in range(3)]
    assert parts[0] == [0, 3, 6, 9] and sorted(sum(parts, [])) == items
