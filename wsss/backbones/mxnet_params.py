"""Reader for MXNet's NDArray-list files (``*.params``) without MXNet.

Binary layout (little endian), as written by MXNet's ``NDArray::Save`` (src/ndarray/ndarray.cc,
the format ``mx.nd.save`` / ``mx.model.save_checkpoint`` produce):

    uint64 0x112 (list magic)   uint64 reserved
    uint64 N, then N arrays:
        uint32 magic
          0xF993FAC9 (V2) / 0xF993FACA (V3, numpy shape semantics):
              int32 storage type (0 = dense; sparse types are refused here)
              shape: int32 ndim, ndim x int64      (V2: ndim 0 = empty array, nothing follows;
                                                    V3: ndim -1 = empty array)
          0xF993FAC8 (V1): shape: uint32 ndim, ndim x int64
          anything else (legacy): the magic is ndim, then ndim x uint32 dims
        (non-empty arrays only) int32 dev_type, int32 dev_id, int32 dtype flag,
        prod(shape) values of that dtype, C order
    uint64 K (0 or N), then K names: uint64 length + bytes ("arg:..." / "aux:..." in checkpoints)

dtype flags (mshadow): 0 float32, 1 float64, 2 float16, 3 uint8, 4 int32, 5 int8, 6 int64,
7 bool, 8 int16, 9 uint16, 10 uint32, 11 uint64.
"""

import struct
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
DTYPES = {0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8, 6: np.int64,
          7: np.bool_, 8: np.int16, 9: np.uint16, 10: np.uint32, 11: np.uint64}
_FIX = "re-download the file; it must be an MXNet NDArray list such as ilsvrc-cls_rna-a1_cls1000_ep-0001.params"


def is_mxnet_params(path):
    """True when the file starts with MXNet's NDArray-list magic."""
    with open(path, "rb") as f:
        head = f.read(8)
    return len(head) == 8 and struct.unpack("<Q", head)[0] == LIST_MAGIC


class _Reader:
    def __init__(self, f, path):
        self.f, self.path = f, path
        self.size = path.stat().st_size

    def fail(self, message):
        raise CheckpointError(message, path=self.path, fix=_FIX)

    def raw(self, n, what):
        # Check against the file size first: a corrupt length must not trigger a huge allocation.
        data = self.f.read(n) if self.f.tell() + n <= self.size else b""
        if len(data) != n:
            self.fail(f"file ends inside {what} (truncated or not an MXNet .params file)")
        return data

    def unpack(self, fmt, what):
        return struct.unpack("<" + fmt, self.raw(struct.calcsize("<" + fmt), what))

    def shape(self, ndim_fmt, dim_fmt, what):
        (ndim,) = self.unpack(ndim_fmt, what)
        if ndim < 0:
            return None
        return self.unpack(f"{ndim}{dim_fmt}", what) if ndim else ()


def _read_array(r, index):
    what = f"array #{index}"
    (magic,) = r.unpack("I", what)
    if magic in (V2_MAGIC, V3_MAGIC):
        (stype,) = r.unpack("i", what)
        if stype != 0:
            r.fail(f"{what} has sparse storage type {stype}; only dense arrays are supported")
        shape = r.shape("i", "q", what)
        if shape is None or (magic == V2_MAGIC and shape == ()):
            return None
    elif magic == V1_MAGIC:
        shape = r.shape("I", "q", what)
        if shape == ():
            return None
    else:
        if magic > 32:
            r.fail(f"{what} starts with 0x{magic:08X}, not an NDArray magic or a plausible ndim")
        shape = r.unpack(f"{magic}I", what) if magic else ()
        if shape == ():
            return None
    if any(d < 0 for d in shape):
        r.fail(f"{what} has an unknown dimension in shape {shape}")
    _dev_type, _dev_id, flag = r.unpack("iii", what)
    if flag not in DTYPES:
        r.fail(f"{what} has unknown dtype flag {flag}")
    dtype = np.dtype(DTYPES[flag]).newbyteorder("<")
    count = int(np.prod(shape, dtype=np.int64))
    buf = bytearray(r.raw(count * dtype.itemsize, what))
    return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape).astype(DTYPES[flag], copy=False)


def load_mxnet_params(path):
    """``{name: ndarray}`` of an MXNet NDArray-list file, in file order (names keep their
    ``arg:``/``aux:`` prefixes). Raises :class:`CheckpointError` on a corrupt or truncated file."""
    path = Path(path)
    with open(path, "rb") as f:
        r = _Reader(f, path)
        magic, _reserved = r.unpack("QQ", "the header")
        if magic != LIST_MAGIC:
            r.fail(f"header magic 0x{magic:X} is not MXNet's NDArray-list magic 0x{LIST_MAGIC:X}")
        (count,) = r.unpack("Q", "the array count")
        arrays = [_read_array(r, i) for i in range(count)]
        (num_names,) = r.unpack("Q", "the name count")
        if num_names != count:
            r.fail(f"{count} arrays but {num_names} names; a checkpoint needs one name per array")
        names = []
        for i in range(num_names):
            (length,) = r.unpack("Q", f"name #{i}")
            names.append(r.raw(length, f"name #{i}").decode("utf-8", errors="replace"))
    if len(set(names)) != len(names):
        raise CheckpointError("duplicate array names", path=path, fix=_FIX)
    return dict(zip(names, arrays))
