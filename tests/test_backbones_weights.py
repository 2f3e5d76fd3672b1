"""Checkpoint loading: round trips, wrappers and prefixes, dropped heads, clear errors."""

from collections import OrderedDict

import pytest
import torch

from wsss.backbones import build_backbone
from wsss.backbones.weights import check_state_dict, load_weights, map_keys
from wsss.errors import CheckpointError


def trained_like(name="resnet18", **kw):
    """A backbone with random weights and non-trivial BN statistics, in eval mode."""
    torch.manual_seed(0)
    m = build_backbone(name, **kw)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.3, 0.3)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    return m.eval()


def outputs(m, x):
    with torch.no_grad():
        return m.eval()(x)


def assert_same_outputs(a, b):
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    fa, fb = outputs(a, x), outputs(b, x)
    assert all(torch.equal(fa[k], fb[k]) for k in fa)


def test_round_trip_identical_outputs(tmp_path):
    src = trained_like(width=16)
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    torch.manual_seed(123)
    dst = build_backbone("resnet18", width=16, weights=path)
    assert_same_outputs(src, dst)


@pytest.mark.parametrize("layout", ["torchvision_fc", "wrapped_module", "model_wrapper", "backbone_prefix",
                                    "pnoc_model_prefix"])
def test_public_and_wrapped_layouts(tmp_path, layout):
    src = trained_like(width=16)
    sd = OrderedDict(src.state_dict())
    if layout == "torchvision_fc":  # torchvision files: a classifier, and no num_batches_tracked
        sd = OrderedDict((k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked"))
        sd["fc.weight"], sd["fc.bias"] = torch.zeros(1000, 128), torch.zeros(1000)
        obj = sd
    elif layout == "wrapped_module":  # DataParallel model inside a training checkpoint
        obj = {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3, "config": {"lr": 0.1}}
    elif layout == "model_wrapper":
        obj = {"model": sd}
    elif layout == "pnoc_model_prefix":  # P-NOC Classifier: trunk under model.*, stage aliases, head
        obj = {**{f"module.model.{k}": v for k, v in sd.items()}, "module.stage1.0.weight": sd["conv1.weight"],
               "module.classifier.weight": torch.zeros(20, 128, 1, 1)}
    else:  # a whole wsss network: backbone.* plus a head that is not the backbone's
        obj = {"state_dict": {**{f"backbone.{k}": v for k, v in sd.items()},
                              "classifier.weight": torch.zeros(20, 128, 1, 1)}}
    path = tmp_path / f"{layout}.pth"
    torch.save(obj, path)
    dst = build_backbone("resnet18", width=16)
    report = load_weights(dst, path)
    assert report["format"] == "torch"
    assert_same_outputs(src, dst)
    if layout == "torchvision_fc":
        assert sorted(report["dropped"]) == ["fc.bias", "fc.weight"]
        assert all(int(b.num_batches_tracked) == 0 for b in dst.modules() if isinstance(b, torch.nn.BatchNorm2d))


def test_frozen_mode_loads_the_same_checkpoint(tmp_path):
    src = trained_like(width=16)
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    dst = build_backbone("resnet18", width=16, norm_mode="frozen", weights=path).train()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(dst(x)["c5"], outputs(src, x)["c5"])  # .train() keeps running statistics


def test_wrong_architecture_names_file_and_keys(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(trained_like(width=16).state_dict(), path)
    with pytest.raises(CheckpointError) as e:
        build_backbone("resnet50", weights=path)
    msg = str(e.value)
    assert str(path) in msg and "missing keys" in msg and "layer1.0.conv3.weight" in msg
    assert "resnet50" in msg and "fix:" in msg


def test_shape_mismatch_is_reported(tmp_path):
    path = tmp_path / "r18w16.pth"
    torch.save(trained_like(width=16).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"shape mismatches \(conv1.weight: file \(16, 3, 7, 7\), model \(32, 3, 7, 7\)"):
        build_backbone("resnet18", width=32, weights=path)


def test_unexpected_keys_are_reported(tmp_path):
    sd = dict(trained_like(width=16).state_dict())
    sd["layer5.0.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "extra.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"1 unexpected keys \(layer5.0.conv1.weight\)"):
        build_backbone("resnet18", width=16, weights=path)


def test_truncated_corrupt_and_missing_files(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(trained_like(width=16).state_dict(), good)
    data = good.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    no_tensors = tmp_path / "cfg.pth"
    torch.save({"config": {"lr": 0.1}}, no_tensors)
    for path in (cut, garbage, no_tensors, tmp_path / "absent.pth"):
        with pytest.raises(CheckpointError) as e:
            build_backbone("resnet18", width=16, weights=path)
        assert str(path) in str(e.value)


def test_psa_checkpoint_heads_are_dropped_for_resnet38d():
    with torch.device("meta"):
        m = build_backbone("resnet38d", output_stride=8)
        # psa's res38_cls.pth / AffinityNet layout: backbone keys + fc8 / f8_* / f9 heads, DataParallel prefix.
        state = {f"module.{k}": torch.empty(v.shape) for k, v in m.state_dict().items()}
        state.update({"module.fc8.weight": torch.empty(20, 4096, 1, 1), "module.f9.weight": torch.empty(448, 448, 1, 1)})
    mapped, dropped = map_keys(state, "torch", "resnet38d")
    assert sorted(dropped) == ["f9.weight", "fc8.weight"]
    check_state_dict(m, mapped)  # raises on any difference
    del mapped["b4_5.conv_branch2b1.weight"]
    with pytest.raises(CheckpointError, match="b4_5.conv_branch2b1.weight"):
        check_state_dict(m, mapped)
