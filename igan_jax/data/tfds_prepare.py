"""TFDS's step: download (or take from the manual dir) and convert a dataset to array_record.

TFDS's builders import TensorFlow for this, so a training process never runs it in-process:
`prepare_in_subprocess` runs ``python -m igan_jax.data.prepare --tfds_only`` and relays its
DatasetError.  Training then reads the array_record files with ``tfds.data_source``, which needs
no TensorFlow (`igan_jax.data.tfds_arrays`, `igan_jax.data.tfds_images`).

Preparing is idempotent and serialised by a lock per dataset; files that are missing from the
manual dir are checked for reachability first (one TCP connect), so an offline user gets the
message naming the files and the dir in milliseconds, not after TFDS's minutes of retries.

tensorflow_datasets is imported inside the functions that use it: importing it takes ~0.4 s
(measured, `python -X importtime`), and a training process on LSUN or folder data, which
imports this module through the dispatcher, never needs it.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import urllib.parse

from igan_jax.data import fashion_mnist_offline
from igan_jax.data.core import (CACHE_SUBDIR, ERROR_PREFIX, PREPARE_PROG, DatasetError,
                                DatasetSpec, file_lock, one_line, resolve_data_dir, spec)

_log = logging.getLogger(__name__)


def is_prepared(name: str, data_dir: str | None = None) -> bool:
  """Whether `name` is prepared in `data_dir` in the array_record format.

  Imports tensorflow_datasets (not TensorFlow).
  """
  s = spec(name)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (~0.4 s; docstring)
  builder = tfds.builder(s.tfds_name, data_dir=resolve_data_dir(data_dir),
                         file_format="array_record")
  if not builder.is_prepared():
    return False
  formats = {str(getattr(f, "value", f)) for f in builder.info.available_file_formats()}
  return "array_record" in formats


def prepare(s: DatasetSpec, data_dir: str, manual_dir: str,
            debian_dir: str | None = None) -> None:
  """Downloads/converts TFDS dataset `s` into `data_dir` as array_record, once.

  Idempotent: returns at once when already prepared.  For fashion_mnist the source files are
  first restored from Debian's package when it is installed
  (`fashion_mnist_offline.fill_from_debian`).  TFDS takes files found in `manual_dir` instead
  of downloading them.  Raises DatasetError (with the fix) when the files can be neither found
  nor downloaded, or do not match TFDS's registered checksums.
  """
  if is_prepared(s.name, data_dir):
    _log.info("%s is already prepared in %s", s.name, data_dir)
    return
  # Several runs started at once on a fresh data dir would otherwise all
  # generate the dataset and race on TFDS's final rename; the first one
  # prepares, the others wait and then find it prepared.
  with file_lock(os.path.join(data_dir, CACHE_SUBDIR, f".prepare-{s.name}.lock")):
    if is_prepared(s.name, data_dir):
      _log.info("%s was prepared in %s by another process", s.name, data_dir)
      return
    _prepare_locked(s, data_dir, manual_dir, debian_dir)


def _prepare_locked(s: DatasetSpec, data_dir: str, manual_dir: str,
                    debian_dir: str | None) -> None:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (~0.4 s; docstring)
  builder = tfds.builder(s.tfds_name, data_dir=data_dir, file_format="array_record")
  if builder.is_prepared():
    # Prepared, but not as array_record (else is_prepared() said so):
    # download_and_prepare would just reuse it and we could not read it.
    formats = ", ".join(str(getattr(f, "value", f))
                        for f in builder.info.available_file_formats()) or "unknown"
    raise DatasetError(
        f"{s.name} is already prepared in {builder.data_dir} but in another format "
        f"({formats}); igan_jax reads array_record without TensorFlow. Delete "
        f"{builder.data_dir} (or use another data_dir) and prepare again.")

  if s.name == "fashion_mnist":
    fashion_mnist_offline.fill_from_debian(manual_dir, debian_dir)

  missing = [f for f in s.manual_files if not os.path.isfile(os.path.join(manual_dir, f))]
  if missing:
    reason = unreachable(s.download_url)
    if reason:
      raise DatasetError(_prepare_failure_message(s, manual_dir, "network", reason, missing))

  _log.info("preparing %s in %s (manual dir %s)", s.name, data_dir, manual_dir)
  try:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except Exception as e:  # pylint: disable=broad-except
    kind = _classify_prepare_error(e)
    if kind is None:
      raise
    detail = f"{type(e).__name__}: {one_line(str(e))}"
    raise DatasetError(_prepare_failure_message(s, manual_dir, kind, detail)) from e
  _log.info("prepared %s in %s", s.name, builder.data_dir)


def unreachable(url: str, timeout: float = 10.0) -> str | None:
  """Why a plain TCP connect to `url`'s host fails, or None if it connects.

  TFDS's downloader retries a failed request 10 times with exponential
  backoff (~3.5 min in all, even when DNS fails at once), so without network
  we would make the user wait minutes for an error we can see in
  milliseconds.  Behind a proxy a direct connect proves nothing, so we then
  leave it to TFDS.
  """
  if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                                     "http_proxy", "ALL_PROXY", "all_proxy")):
    return None
  parsed = urllib.parse.urlsplit(url)
  port = parsed.port or (443 if parsed.scheme == "https" else 80)
  try:
    socket.create_connection((parsed.hostname, port), timeout=timeout).close()
  except OSError as e:
    return f"cannot connect to {parsed.hostname}:{port}: {type(e).__name__}: {e}"
  return None


def _exception_chain(e: BaseException):
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    yield e
    e = e.__cause__ or e.__context__


def _classify_prepare_error(e: BaseException) -> str | None:
  """'checksum', 'network' or None (an error we should not paper over)."""
  for err in _exception_chain(e):
    name = type(err).__name__
    if "Checksum" in name:  # tfds.download.NonMatchingChecksumError
      return "checksum"
    if isinstance(err, (ConnectionError, TimeoutError, socket.gaierror)):
      return "network"
    module = type(err).__module__ or ""
    if module.startswith(("requests", "urllib3", "urllib.error", "http.client")):
      return "network"
    if "DownloadError" in name:
      return "network"
  return None


def _prepare_failure_message(s: DatasetSpec, manual_dir: str, kind: str, detail: str,
                             missing: list[str] | None = None) -> str:
  """One paragraph: what failed, and which files to put where."""
  put = (f"put the {len(s.manual_files)} original files {', '.join(s.manual_files)} "
         f"(from {s.homepage or s.download_url}) into {manual_dir}")
  if s.name == "fashion_mnist":
    put += (", or install Debian's package dataset-fashion-mnist (its files are "
            "restored into the manual dir automatically)")
  if kind == "checksum":
    return (f"Cannot prepare {s.name}: a source file does not match the checksum "
            f"TFDS registered ({detail}). Delete the wrong file from {manual_dir} "
            f"(or from {os.path.dirname(manual_dir)}), {put}, and run it again.")
  if missing and len(missing) < len(s.manual_files):
    what = f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing from"
  else:
    what = "its source files are not in"
  return (f"Cannot prepare {s.name}: {what} the manual dir {manual_dir} and cannot be "
          f"downloaded ({detail}). Without network access, {put}, and run it again.")


# ----------------------------------------------------------------------------
# Preparation from a training process: in a subprocess.


def prepare_in_subprocess(name: str, data_dir: str, manual_dir: str | None = None) -> None:
  """Runs `python -m igan_jax.data.prepare` and relays its DatasetError."""
  # The package root goes first on PYTHONPATH so the child imports this same
  # igan_jax whether or not it is installed.
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
  cmd = [sys.executable, "-m", PREPARE_PROG, f"--dataset={name}", f"--data_dir={data_dir}",
         "--tfds_only"]
  if manual_dir:
    cmd.append(f"--manual_dir={manual_dir}")
  print(f"igan_jax.data: {name} is not prepared in {data_dir}; preparing it once "
        f"in a subprocess: {' '.join(cmd)}", file=sys.stderr, flush=True)
  proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True, check=False)
  for line in proc.stdout.splitlines():  # the CLI's short summary of what it did
    print(f"  {line}", file=sys.stderr)
  if proc.returncode == 0:
    return
  err_lines = proc.stderr.splitlines()
  if proc.returncode == 2:
    for line in reversed(err_lines):
      if line.startswith(ERROR_PREFIX):
        raise DatasetError(line[len(ERROR_PREFIX):])
  tail = "\n".join(err_lines[-20:])
  raise DatasetError(
      f"Preparing {name} in a subprocess failed (exit code {proc.returncode}); run "
      f"`{' '.join(cmd)}` to see the full error. Its output ended with:\n{tail}")
