"""Reading ``.npy`` files that hold pickled objects without running arbitrary code.

``np.save(path, {"keys": ..., "cam": tensor, "hr_cam": ...})`` (P-NOC's released CAM files,
psa-family ``{class: map}`` dicts) stores an object array whose payload is a pickle. Loading it
with ``np.load(allow_pickle=True)`` runs whatever callables the pickle names, so a downloaded
file could execute code. :func:`load_npy` instead unpickles with a restricted
:class:`pickle.Unpickler` that resolves only these globals:

- numpy's array and dtype reconstructors (``numpy[._]core.multiarray._reconstruct`` / ``scalar``,
  ``numpy.ndarray``, ``numpy.dtype``);
- ``collections.OrderedDict`` (the empty hook dict of a pickled tensor);
- torch tensors (``torch._utils._rebuild_tensor[_v2]`` with the storage from
  ``torch.storage._load_from_bytes``): the storage bytes are read by
  ``torch.load(weights_only=True)`` and the tensor comes back as a numpy array.

Plain containers (dict, list, tuple, int, float, str, bytes) need no globals. Anything else,
e.g. a pickle whose reduce calls ``os.system``, raises :class:`~wsss.errors.DataError` before
anything is called. Arrays that are not object arrays load with ``allow_pickle=False``.
"""

import io
import pickle

import numpy as np

from ..errors import DataError

class Refused(pickle.UnpicklingError):
    """The pickle names something the restricted unpickler does not resolve."""


_NUMPY = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


def _storage_from_bytes(data):
    import torch

    try:
        storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # torch's own restricted unpickler refused it, or the bytes are damaged
        raise Refused(f"a tensor's storage is not plain tensor data ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise Refused(f"a tensor's storage holds a {type(storage).__name__}")
    return storage


def _tensor_as_array(storage, offset, size, stride, *rest):
    import torch

    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise Refused(f"a tensor was rebuilt from a {type(storage).__name__}, not a storage")
    hooks = rest[1] if len(rest) > 1 else None
    if hooks:
        raise Refused("a pickled tensor carries backward hooks")
    tensor = torch._utils._rebuild_tensor(storage, offset, tuple(size), tuple(stride))
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.numpy().copy()


_TORCH = {
    ("torch._utils", "_rebuild_tensor_v2"): _tensor_as_array,
    ("torch._utils", "_rebuild_tensor"): _tensor_as_array,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy arrays, ``OrderedDict`` and torch tensors (as
    numpy arrays); any other global raises :class:`Refused`."""

    def find_class(self, module, name):
        if (module, name) in _NUMPY:
            return super().find_class(module, name)
        if (module, name) == ("collections", "OrderedDict"):
            import collections

            return collections.OrderedDict
        if (module, name) in _TORCH:
            return _TORCH[(module, name)]
        raise Refused(f"refused to load global {module}.{name}")


def load_npy(path):
    """The content of a ``.npy`` file: an array, or the object an object array wraps (a 0-d
    object array -> its item, e.g. a dict), unpickled by :class:`RestrictedUnpickler`."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran, dtype = read_header(f)
            if not dtype.hasobject:
                f.seek(0)
                return np.load(f, allow_pickle=False)
            obj = RestrictedUnpickler(f).load()
    except Refused as e:
        raise DataError(f"refused to unpickle this .npy file: {e}", path=path,
                        fix="only numpy arrays, dicts, lists, numbers and torch tensors are read from pickled "
                            ".npy files; do not use a file from an untrusted source") from None
    except Exception as e:  # truncated file, bad header, bad pickle stream
        raise DataError(f"cannot read .npy file ({type(e).__name__}: {e})", path=path,
                        fix="delete it and re-create or re-download it") from None
    if not isinstance(obj, np.ndarray):
        raise DataError(f"the pickle in this .npy file holds a {type(obj).__name__}, not an array", path=path,
                        fix="write it with np.save")
    return obj.item() if obj.shape == () else obj
