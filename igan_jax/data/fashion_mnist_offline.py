"""Offline Fashion-MNIST: rebuild TFDS's registered source files from Debian's.

Debian's package ``dataset-fashion-mnist`` ships the four original Fashion-MNIST
files, but re-gzipped headers (flags 0, a 2020 MTIME, no file name) make their
bytes differ from the files TFDS registered, so TFDS's checksum check rejects
them.  The compressed payload (deflate stream + CRC32 + size trailer) is
untouched, so writing back the original header — FNAME set, the original
MTIME, OS byte 3 (Unix) — reproduces the registered files byte for byte.  We
verify every result against the size and sha256 TFDS registered and refuse to
write anything that does not match.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import uuid

from igan_jax.data.core import DatasetError

_log = logging.getLogger(__name__)

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"

# Size and sha256 of the files TFDS registered for fashion_mnist
# (tensorflow_datasets/url_checksums/fashion_mnist.txt).
EXPECTED: dict[str, tuple[int, str]] = {
    "t10k-images-idx3-ubyte.gz": (
        4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
    "t10k-labels-idx1-ubyte.gz": (
        5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    "train-images-idx3-ubyte.gz": (
        26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    "train-labels-idx1-ubyte.gz": (
        29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
}

# The gzip MTIME of the original upstream files (2017-08-31), per file group.
ORIGINAL_MTIME = {"train": 1504176606, "t10k": 1504176627}

_GZIP_MAGIC = b"\x1f\x8b"
_FTEXT, _FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 1, 2, 4, 8, 16
_OS_UNIX = 3


def _gzip_header_length(data: bytes, filename: str) -> int:
  """Length of the gzip member header at the start of `data` (RFC 1952 §2.3)."""
  if len(data) < 10 or data[:2] != _GZIP_MAGIC or data[2] != 8:
    raise DatasetError(f"{filename} is not a gzip (deflate) file.")
  flags = data[3]
  pos = 10
  try:
    if flags & _FEXTRA:
      (xlen,) = struct.unpack_from("<H", data, pos)
      pos += 2 + xlen
    for flag in (_FNAME, _FCOMMENT):
      if flags & flag:
        pos = data.index(b"\0", pos) + 1
    if flags & _FHCRC:
      pos += 2
  except (struct.error, ValueError):
    raise DatasetError(f"{filename} has a truncated gzip header.") from None
  if pos > len(data):
    raise DatasetError(f"{filename} has a truncated gzip header.")
  return pos


def restore_gzip_header(data: bytes, filename: str, mtime: int) -> bytes:
  """Replaces the gzip header of `data` with the upstream-style one.

  The new header has FNAME set to `filename` without ".gz", MTIME `mtime`,
  the original XFL byte and OS = Unix; the compressed body is kept as is.
  """
  start = _gzip_header_length(data, filename)
  name = filename[:-3] if filename.endswith(".gz") else filename
  header = (b"\x1f\x8b\x08" + bytes([_FNAME]) + struct.pack("<I", mtime)
            + bytes([data[8], _OS_UNIX]) + name.encode() + b"\0")
  return header + data[start:]


def _sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _matches(path: str, filename: str) -> bool:
  size, sha = EXPECTED[filename]
  try:
    if os.path.getsize(path) != size:
      return False
    with open(path, "rb") as f:
      return _sha256(f.read()) == sha
  except OSError:
    return False


def _atomic_write(path: str, data: bytes) -> None:
  # A temp file + os.replace so that an interrupted run never leaves a
  # half-written file that TFDS would then reject with a checksum error.
  # open(..., "xb") rather than mkstemp: the file gets the umask's mode, not 0600.
  tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{uuid.uuid4().hex}")
  try:
    with open(tmp, "xb") as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def fill_manual_dir(manual_dir: str, debian_dir: str = DEBIAN_DIR) -> list[str]:
  """Writes TFDS's four Fashion-MNIST files into `manual_dir` from `debian_dir`.

  Files already in `manual_dir` with the registered sha256 are left alone.
  Returns the paths written (empty when nothing had to be done).  Raises
  DatasetError when a Debian file is missing or does not restore to the
  registered sha256.
  """
  manual_dir = os.path.abspath(manual_dir)
  todo = [f for f in sorted(EXPECTED)
          if not _matches(os.path.join(manual_dir, f), f)]
  if not todo:
    return []
  missing = [f for f in todo if not os.path.isfile(os.path.join(debian_dir, f))]
  if missing:
    raise DatasetError(
        f"Fashion-MNIST source file(s) {', '.join(missing)} not found in "
        f"{debian_dir}; install Debian's package dataset-fashion-mnist "
        f"(apt-get install dataset-fashion-mnist) or put the four original "
        f"files ({', '.join(sorted(EXPECTED))}) from "
        f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ "
        f"into {manual_dir}.")
  os.makedirs(manual_dir, exist_ok=True)
  written = []
  for filename in todo:
    src = os.path.join(debian_dir, filename)
    with open(src, "rb") as f:
      data = restore_gzip_header(f.read(), filename,
                                 ORIGINAL_MTIME[filename.split("-")[0]])
    size, sha = EXPECTED[filename]
    if len(data) != size or _sha256(data) != sha:
      raise DatasetError(
          f"{src} does not match the registered Fashion-MNIST file after "
          f"restoring its gzip header (got {len(data)} bytes, sha256 "
          f"{_sha256(data)}; expected {size} bytes, sha256 {sha}); the "
          f"file is corrupt or a different release: reinstall Debian's "
          f"dataset-fashion-mnist or put the original {filename} from "
          f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ "
          f"into {manual_dir}.")
    dst = os.path.join(manual_dir, filename)
    _atomic_write(dst, data)
    written.append(dst)
  return written


def fill_from_debian(manual_dir: str, debian_dir: str | None = None) -> None:
  """Fills `manual_dir` from Debian's package when it is installed and a file is missing.

  `debian_dir` defaults to $IGAN_FASHION_MNIST_DEBIAN_DIR, else `DEBIAN_DIR`.  Without
  Debian's copy nothing happens and TFDS downloads what is missing; files the user put in
  `manual_dir` are checked by TFDS itself.
  """
  debian_dir = debian_dir or os.environ.get("IGAN_FASHION_MNIST_DEBIAN_DIR") or DEBIAN_DIR
  present = all(os.path.isfile(os.path.join(manual_dir, f)) for f in EXPECTED)
  if present or not os.path.isdir(debian_dir):
    return
  for path in fill_manual_dir(manual_dir, debian_dir):
    _log.info("restored %s from %s", path, debian_dir)
