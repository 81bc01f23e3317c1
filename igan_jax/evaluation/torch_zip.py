"""Reading torch zip archives (torch.save or TorchScript) with numpy only, running no code.

The reader (`read_torch_zip`) understands both the TorchScript archive and a plain `torch.save`
zip of a state_dict (pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`). Its unpickler is a
whitelist: tensors, storages, OrderedDict, TorchScript list builders and `__torch__.*` module
objects (rebuilt as plain attribute holders). Any other global is refused, so reading a file runs
none of its code.
"""
from __future__ import annotations

import collections
import pickle
import zipfile
from typing import Any

import numpy as np

from igan_jax.evaluation.inception_weights import WeightsError

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:

  def __init__(self, name: str):
    if name not in _STORAGE_DTYPES:
      raise pickle.UnpicklingError(f"unsupported torch storage type {name}")
    self.name = name
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


class TorchObject:
  """Stand-in for a pickled `__torch__.*` (TorchScript) module: keeps its attribute dict."""
  _type_name = "?"

  def __setstate__(self, state):
    if not isinstance(state, dict):
      raise pickle.UnpicklingError(f"{self._type_name}: expected a dict state, got {type(state)}")
    self.__dict__.update(state)

  def __repr__(self):
    return f"<{self._type_name}>"


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  storage = np.asarray(storage)
  size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
  if len(size) != len(stride) or any(s < 0 for s in stride) or storage_offset < 0:
    raise pickle.UnpicklingError(f"bad tensor layout size={size} stride={stride}")
  if 0 in size:
    return np.zeros(size, storage.dtype)
  last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
  if last >= storage.size:  # as_strided would read past the buffer
    raise pickle.UnpicklingError(f"tensor (offset {storage_offset}, size {size}, stride "
                                 f"{stride}) overruns its storage of {storage.size} elements")
  item = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(storage[storage_offset:], shape=size,
                                         strides=tuple(s * item for s in stride), writeable=False)
  return np.array(view)  # an owning, C-contiguous copy


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
  return data


class _TorchZipUnpickler(pickle.Unpickler):

  def __init__(self, file, zf: zipfile.ZipFile, root: str, big_endian: bool):
    super().__init__(file)
    self._zf, self._root, self._big = zf, root, big_endian
    self._storages: dict[str, np.ndarray] = {}
    self._classes: dict[str, type] = {}

  def find_class(self, module, name):
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
      return _rebuild_tensor
    if module == "torch._utils" and name in ("_rebuild_parameter",
                                             "_rebuild_parameter_with_state"):
      return _rebuild_parameter
    if module == "torch" and name.endswith("Storage"):
      return _StorageType(name)
    if module == "collections" and name == "OrderedDict":
      return collections.OrderedDict
    if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist",
                                                  "build_boollist", "build_tensorlist"):
      return list
    if module.startswith("__torch__"):
      key = f"{module}.{name}"
      if key not in self._classes:
        self._classes[key] = type(name, (TorchObject,), {"_type_name": key})
      return self._classes[key]
    raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a weights file")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
    _, storage_type, key, _location, numel = pid
    if not isinstance(storage_type, _StorageType):
      raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
    if key not in self._storages:
      raw = self._zf.read(f"{self._root}/data/{key}")
      dtype = storage_type.dtype.newbyteorder(">" if self._big else "<")
      if len(raw) < numel * dtype.itemsize:
        raise pickle.UnpicklingError(f"storage {key}: {len(raw)} bytes for {numel} elements")
      arr = np.frombuffer(raw, dtype, count=numel)
      self._storages[key] = arr.astype(storage_type.dtype.newbyteorder("="), copy=False)
    return self._storages[key]


def load_torch_zip(path: str) -> Any:
  """Unpickle `data.pkl` of a torch zip archive (torch.save or TorchScript) with numpy only."""
  try:
    zf = zipfile.ZipFile(path)
  except zipfile.BadZipFile as e:
    raise WeightsError(f"{path} is not a zip archive (torch >= 1.6 .pt/.pth, or TorchScript); "
                       f"the legacy non-zip torch.save format is not supported") from e
  with zf:
    pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
      raise WeightsError(f"{path}: expected one <root>/data.pkl, found {pkls}")
    root = pkls[0].split("/")[0]
    big = False
    if f"{root}/byteorder" in zf.namelist():
      big = zf.read(f"{root}/byteorder").strip() == b"big"
    with zf.open(pkls[0]) as f:
      return _TorchZipUnpickler(f, zf, root, big).load()


def _walk(obj, prefix: str, tensors: dict, attrs: dict, seen: set) -> None:
  if isinstance(obj, np.ndarray):
    tensors[prefix] = obj
    return
  if isinstance(obj, TorchObject):
    if id(obj) in seen:
      return
    seen.add(id(obj))
    items = obj.__dict__.items()
  elif isinstance(obj, dict):
    items = obj.items()
  else:
    attrs[prefix] = obj
    return
  for k, v in items:
    _walk(v, f"{prefix}.{k}" if prefix else str(k), tensors, attrs, seen)


def read_torch_zip(path: str, with_attrs: bool = False):
  """{dotted name: np.ndarray} of every tensor in a torch zip archive (and, if asked, the other
  leaf attributes, e.g. the conv `stride`/`padding` of a TorchScript module)."""
  tensors: dict[str, np.ndarray] = {}
  attrs: dict[str, Any] = {}
  _walk(load_torch_zip(path), "", tensors, attrs, set())
  return (tensors, attrs) if with_attrs else tensors
