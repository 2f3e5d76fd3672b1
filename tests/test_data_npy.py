"""Pickled .npy CAM files are read without running code from them (wsss.data.npy)."""

import decimal
import os

import numpy as np
import pytest
import torch

from wsss.data.io import find_cam, load_cam
from wsss.data.npy import load_npy
from wsss.errors import DataError


class Evil:
    """Unpickling this runs a shell command (what np.load(allow_pickle=True) would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pnoc_dict_with_a_torch_tensor(tmp_path):
    g = torch.Generator().manual_seed(0)
    cam = torch.rand(2, 3, 4, generator=g)
    hr = np.random.default_rng(0).random((2, 9, 13), dtype=np.float32)
    path = tmp_path / "2007_000032.npy"
    # P-NOC's scripts/cam/inference.py: keys with the background prepended, classes + 1
    np.save(path, {"keys": np.array([0, 3, 15]), "cam": cam, "hr_cam": hr})
    out = load_cam(path)
    assert out["keys"].tolist() == [2, 14]
    assert np.array_equal(out["cam"], cam.numpy()) and np.array_equal(out["hr_cam"], hr)
    assert find_cam(tmp_path, "2007_000032") == path


def test_non_contiguous_and_half_tensors(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    np.save(tmp_path / "a.npy", {"t": base.t(), "h": base[1:3].half(), "n": 3, "l": [1, 2.5, "x"]})
    d = load_npy(tmp_path / "a.npy")
    assert np.array_equal(d["t"], base.t().numpy()) and d["h"].dtype == np.float16
    assert np.array_equal(d["h"].astype(np.float32), base[1:3].numpy())
    assert d["n"] == 3 and d["l"] == [1, 2.5, "x"]


def test_psa_class_map_dict(tmp_path):
    maps = {14: np.full((5, 7), 0.5, np.float32), 2: np.eye(5, 7, dtype=np.float32)}
    np.save(tmp_path / "x.npy", maps)
    out = load_cam(tmp_path / "x.npy")
    assert out["keys"].tolist() == [2, 14] and "cam" not in out
    assert np.array_equal(out["hr_cam"], np.stack([maps[2], maps[14]]))
    np.save(tmp_path / "bad.npy", {0: np.zeros((2, 2)), 1: np.zeros((3, 3))})
    with pytest.raises(DataError, match="one size"):
        load_cam(tmp_path / "bad.npy")


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([{"keys": [0, 1], "hr_cam": Evil(marker)}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError) as e:
        load_cam(path)
    assert "refused" in str(e.value) and "system" in str(e.value) and str(path) in str(e.value)
    assert not marker.exists()
    # the same file through np.load(allow_pickle=True) would have run the command
    np.load(path, allow_pickle=True)
    assert marker.exists()


class EvilStorage:
    """A 'tensor storage' whose bytes are a pickle that runs a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pickle

        return torch.storage._load_from_bytes, (pickle.dumps(Evil(self.marker), protocol=2),)


def test_malicious_tensor_storage_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    np.save(tmp_path / "s.npy", np.array([{"cam": EvilStorage(marker)}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="refused to unpickle.*storage is not plain tensor data"):
        load_npy(tmp_path / "s.npy")
    assert not marker.exists()


def test_other_globals_are_refused(tmp_path):
    path = tmp_path / "set.npy"
    np.save(path, {"keys": [1], "hr_cam": np.zeros((1, 2, 2)), "when": decimal.Decimal(1)})
    with pytest.raises(DataError, match="refused to load global decimal.Decimal"):
        load_npy(path)


def test_plain_arrays_truncated_and_wrong_content(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", a)
    assert np.array_equal(load_npy(tmp_path / "a.npy"), a)
    np.save(tmp_path / "d.npy", {"keys": np.array([1]), "cam": torch.ones(1, 2, 2), "hr_cam": np.ones((1, 4, 4))})
    raw = (tmp_path / "d.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cannot read .npy file"):
        load_cam(tmp_path / "cut.npy")
    np.save(tmp_path / "list.npy", np.array([1, 2], dtype=object))
    with pytest.raises(DataError, match="holds a ndarray, not a dict"):
        load_cam(tmp_path / "list.npy")
