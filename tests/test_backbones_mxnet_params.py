"""MXNet NDArray-list reader (files written here from the format spec) and the ResNet-38 key map."""

import struct

import numpy as np
import pytest
import torch

from wsss.backbones import build_backbone, load_weights
from wsss.backbones.mxnet_params import load_mxnet_params
from wsss.backbones.weights import check_state_dict, map_keys, mxnet_resnet38_name
from wsss.errors import CheckpointError

# ---- a writer for MXNet's format, from the spec (NDArray::Save / the list Save of ndarray.cc) ----
FLAGS = {np.float32: 0, np.float64: 1, np.float16: 2, np.uint8: 3, np.int32: 4, np.int8: 5, np.int64: 6}
CPU = struct.pack("<ii", 1, 0)  # dev_type kCPU = 1, dev_id 0


def _payload(a):
    return CPU + struct.pack("<i", FLAGS[a.dtype.type]) + np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()


def nd_v2(a):
    return struct.pack(f"<Iii{a.ndim}q", 0xF993FAC9, 0, a.ndim, *a.shape) + _payload(a)


def nd_v3(a):
    return struct.pack(f"<Iii{a.ndim}q", 0xF993FACA, 0, a.ndim, *a.shape) + _payload(a)


def nd_v1(a):
    return struct.pack(f"<II{a.ndim}q", 0xF993FAC8, a.ndim, *a.shape) + _payload(a)


def nd_legacy(a):
    return struct.pack(f"<I{a.ndim}I", a.ndim, *a.shape) + _payload(a)


def nd_empty_v2(_a=None):
    return struct.pack("<Iii", 0xF993FAC9, 0, 0)


def params_bytes(items, encode=nd_v2):
    """``items``: [(name, array)] or [(name, array, encoder)]."""
    out = [struct.pack("<QQQ", 0x112, 0, len(items))]
    out += [(item[2] if len(item) > 2 else encode)(item[1]) for item in items]
    out.append(struct.pack("<Q", len(items)))
    out += [struct.pack("<Q", len(item[0].encode())) + item[0].encode() for item in items]
    return b"".join(out)


# ---- the ResNet-38 naming of the MXNet release, written out unit by unit -----------------------
def mxnet_resnet38_pairs():
    """``[(mxnet name, psa name)]`` of every array in the MXNet ResNet-38 checkpoint but the classifier."""
    pairs = [("arg:conv1a_weight", "conv1a.weight")]
    bn = [("arg:", "gamma", "weight"), ("arg:", "beta", "bias"), ("aux:", "moving_mean", "running_mean"),
          ("aux:", "moving_var", "running_var")]
    for stage, extra_units in {2: 2, 3: 2, 4: 5, 5: 2, 6: 0, 7: 0}.items():
        for unit in ["a"] + [f"b{k}" for k in range(1, extra_units + 1)]:
            psa = f"b{stage}" if unit == "a" else f"b{stage}_{unit[1:]}"
            for br in ["2a", "2b1"] + (["2b2"] if stage >= 6 else []):
                pairs.append((f"arg:res{stage}{unit}_branch{br}_weight", f"{psa}.conv_branch{br}.weight"))
                pairs += [(f"{p}bn{stage}{unit}_branch{br}_{mx}", f"{psa}.bn_branch{br}.{pt}") for p, mx, pt in bn]
            if unit == "a":
                pairs.append((f"arg:res{stage}a_branch1_weight", f"{psa}.conv_branch1.weight"))
    pairs += [(f"{p}bn7_{mx}", f"bn7.{pt}") for p, mx, pt in bn]
    return pairs


HEAD = ["arg:linear1000_weight", "arg:linear1000_bias"]


# ---- reader -------------------------------------------------------------------------------------
def sample_arrays():
    rng = np.random.default_rng(0)
    return [
        ("arg:w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32), nd_v2),
        ("arg:h", rng.standard_normal((5,)).astype(np.float16), nd_v1),
        ("aux:l", rng.integers(-9, 9, (2, 3)).astype(np.int64), nd_legacy),
        ("arg:u", rng.integers(0, 255, (7,)).astype(np.uint8), nd_v3),
        ("arg:d", rng.standard_normal((2, 2)).astype(np.float64), nd_v2),
        ("arg:s", np.array(3.5, dtype=np.float32), nd_v3),  # numpy-semantics scalar
    ]


def test_reader_round_trip_all_versions_and_dtypes(tmp_path):
    items = sample_arrays()
    path = tmp_path / "x.params"
    path.write_bytes(params_bytes(items + [("arg:empty", None, nd_empty_v2)]))
    got = load_mxnet_params(path)
    assert list(got) == [n for n, *_ in items] + ["arg:empty"]
    for name, a, _ in items:
        assert got[name].dtype == a.dtype and got[name].shape == a.shape and np.array_equal(got[name], a), name
    assert got["arg:empty"] is None


def test_reader_rejects_every_truncation(tmp_path):
    data = params_bytes(sample_arrays())
    path = tmp_path / "cut.params"
    for n in [*range(8, len(data), 3), len(data) - 1]:  # prefixes that still carry the magic
        path.write_bytes(data[:n])
        with pytest.raises(CheckpointError, match="cut.params"):
            load_mxnet_params(path)


@pytest.mark.parametrize("case", ["magic", "sparse", "names", "dtype"])
def test_reader_rejects_malformed_files(tmp_path, case):
    a = np.ones((2, 2), np.float32)
    if case == "magic":
        data = struct.pack("<QQQ", 0x113, 0, 0) + struct.pack("<Q", 0)
    elif case == "sparse":
        data = struct.pack("<QQQ", 0x112, 0, 1) + struct.pack("<Iii", 0xF993FAC9, 1, 0) + struct.pack("<Q", 0)
    elif case == "names":
        data = params_bytes([("arg:a", a)])[:-(8 + 8 + len(b"arg:a"))] + struct.pack("<Q", 0)  # no names
    else:
        data = params_bytes([("arg:a", a)]).replace(struct.pack("<ii", 1, 0) + struct.pack("<i", 0),
                                                    struct.pack("<ii", 1, 0) + struct.pack("<i", 99))
    path = tmp_path / f"{case}.params"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=f"{case}.params"):
        load_mxnet_params(path)


# ---- key map ------------------------------------------------------------------------------------
def test_key_map_examples():
    assert mxnet_resnet38_name("arg:res2a_branch2a_weight") == "b2.conv_branch2a.weight"
    assert mxnet_resnet38_name("arg:res4b5_branch2b1_weight") == "b4_5.conv_branch2b1.weight"
    assert mxnet_resnet38_name("aux:bn2a_branch2a_moving_mean") == "b2.bn_branch2a.running_mean"
    assert mxnet_resnet38_name("aux:bn5b2_branch2b1_moving_var") == "b5_2.bn_branch2b1.running_var"
    assert mxnet_resnet38_name("arg:bn6a_branch2b2_gamma") == "b6.bn_branch2b2.weight"
    assert mxnet_resnet38_name("arg:res7a_branch1_weight") == "b7.conv_branch1.weight"
    assert mxnet_resnet38_name("arg:bn7_beta") == "bn7.bias"
    assert mxnet_resnet38_name("arg:conv1a_weight") == "conv1a.weight"
    assert mxnet_resnet38_name("arg:linear1000_weight") is None
    assert mxnet_resnet38_name("arg:fc_weight") == "arg:fc_weight"  # unknown: left for the strict check


def test_key_map_covers_resnet38d_exactly():
    with torch.device("meta"):
        m = build_backbone("resnet38d", output_stride=8)
    expected = {k: v.shape for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
    pairs = mxnet_resnet38_pairs()
    assert sorted(psa for _, psa in pairs) == sorted(expected)
    assert all(mxnet_resnet38_name(mx) == psa for mx, psa in pairs)
    state = {mx: torch.empty(expected[psa], device="meta") for mx, psa in pairs}
    state.update({h: torch.empty(1) for h in HEAD})
    mapped, dropped = map_keys(state, "mxnet", "resnet38d")
    assert sorted(dropped) == sorted(HEAD)
    check_state_dict(m, mapped)


def test_mxnet_file_into_other_backbone_or_with_foreign_names(tmp_path):
    path = tmp_path / "r38.params"
    path.write_bytes(params_bytes([("arg:conv1a_weight", np.zeros((64, 3, 3, 3), np.float32)),
                                   ("arg:fc_weight", np.zeros((2, 2), np.float32))]))
    with pytest.raises(CheckpointError, match="resnet38d only"):
        build_backbone("resnet18", width=8, weights=path)
    with torch.device("meta"):
        m = build_backbone("resnet38d", output_stride=8)
    with pytest.raises(CheckpointError, match=r"r38.params.*unexpected keys \(arg:fc_weight\)"):
        load_weights(m, path)


@pytest.mark.slow
def test_full_mxnet_checkpoint_loads_into_resnet38d(tmp_path):
    """A complete ResNet-38 checkpoint in MXNet's format (fp16, mixed V2/legacy records) loads
    strictly and reproduces the source network's outputs."""
    torch.manual_seed(0)
    src = build_backbone("resnet38d", output_stride=8).eval()
    sd = src.state_dict()
    with torch.no_grad():
        for k, v in sd.items():
            if "running_var" in k:
                v.uniform_(0.5, 2.0)
            if v.is_floating_point():
                v.copy_(v.half().float())  # exactly representable in the fp16 file
    items = [(mx, sd[psa].numpy().astype(np.float16), nd_v2 if i % 2 else nd_legacy)
             for i, (mx, psa) in enumerate(mxnet_resnet38_pairs())]
    items += [(HEAD[0], np.zeros((1000, 4096), np.float16)), (HEAD[1], np.zeros(1000, np.float16))]
    path = tmp_path / "ilsvrc-cls_rna-a1_cls1000_ep-0001.params"
    path.write_bytes(params_bytes(items[::-1]))
    del items
    dst = build_backbone("resnet38d", output_stride=8, weights=path).eval()
    got = dst.state_dict()
    assert all(torch.equal(got[k], v) for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(dst(x)["c5"], src(x)["c5"])
