"""Run outputs a person reads: metrics.jsonl, TensorBoard event files, sample grids, progress.

TensorBoard's event format is written here directly (TFRecord framing of `Event` protobufs, a
few dozen lines), so the training process imports neither TensorFlow nor tensorboard.
"""
from __future__ import annotations

import json
import math
import os
import socket
import struct
import sys
import time

import numpy as np

# ---------------------------------------------------------------------------------------------
# TensorBoard event files: TFRecord records holding hand-encoded `tensorflow.Event` messages.


def _crc32c_table():
  poly, table = 0x82F63B78, []
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ poly if c & 1 else c >> 1
    table.append(c)
  return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for b in data:
    crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    b = n & 0x7F
    n >>= 7
    out.append(b | (0x80 if n else 0))
    if not n:
      return bytes(out)


def _field_bytes(num: int, payload: bytes) -> bytes:  # wire type 2: length-delimited
  return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int, *, file_version: str | None = None,
           scalars: dict | None = None) -> bytes:
  msg = _varint(1 << 3 | 1) + struct.pack("<d", wall_time)  # double wall_time = 1
  msg += _varint(2 << 3 | 0) + _varint(step)                # int64 step = 2
  if file_version is not None:
    msg += _field_bytes(3, file_version.encode())            # string file_version = 3
  if scalars:
    summary = b""
    for tag, value in scalars.items():                       # Summary.Value: tag = 1, simple_value = 2
      v = _field_bytes(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", float(value))
      summary += _field_bytes(1, v)
    msg += _field_bytes(5, summary)                          # Summary summary = 5
  return msg


class TensorBoardWriter:
  """Appends scalar summaries to an `events.out.tfevents.*` file readable by TensorBoard."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
    self.path = os.path.join(logdir, name)
    self._f = open(self.path, "ab")
    self._write(_event(time.time(), 0, file_version="brain.Event:2"))

  def _write(self, data: bytes):
    header = struct.pack("<Q", len(data))
    self._f.write(header + struct.pack("<I", _masked_crc(header)) + data +
                  struct.pack("<I", _masked_crc(data)))

  def scalars(self, step: int, values: dict):
    self._write(_event(time.time(), step, scalars=values))
    self._f.flush()

  def close(self):
    self._f.close()


# ---------------------------------------------------------------------------------------------


class MetricWriter:
  """Writes each logged row to metrics.jsonl and TensorBoard, and a progress line to stderr."""

  def __init__(self, workdir: str, total_steps: int):
    self.total = total_steps
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    self._tb = TensorBoardWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, row: dict):
    row = {"step": int(step), **{k: _plain(v) for k, v in row.items()}}
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    self._tb.scalars(step, {k: v for k, v in row.items()
                            if k != "step" and isinstance(v, (int, float))})

  def progress(self, step: int, row: dict):
    its = row.get("it_per_s", float("nan"))
    eta = (self.total - step) / its if its and its > 0 else float("nan")
    keys = ("d_loss", "g_loss", "gp", "lr_d")
    parts = " ".join(f"{k}={row[k]:.4g}" for k in keys if k in row)
    print(f"[igan_jax] step {step}/{self.total}  {parts}  {its:.3f} it/s  "
          f"eta {_fmt_time(eta)}", file=sys.stderr, flush=True)

  def close(self):
    self._jsonl.close()
    self._tb.close()


def _plain(v):
  v = np.asarray(v).item() if not isinstance(v, (str, bool)) else v
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)  # JSON has no NaN/inf: keep it visible as a string
  return v


def _fmt_time(s: float) -> str:
  if not math.isfinite(s):
    return "?"
  s = int(s)
  return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def image_grid(images: np.ndarray, ncols: int | None = None, pad: int = 2) -> np.ndarray:
  """(N, H, W, C) in [−1, 1] → one uint8 (rows·(H+pad)+pad, cols·(W+pad)+pad, C) grid."""
  images = np.asarray(images, np.float32)
  n, h, w, c = images.shape
  ncols = ncols or int(math.ceil(math.sqrt(n)))
  nrows = int(math.ceil(n / ncols))
  # [−1, 1] → [0, 255] (docs/paper.md §2)
  u8 = np.clip(np.round((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
  grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, np.uint8)
  for i in range(n):
    r, col = divmod(i, ncols)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h,
         pad + col * (w + pad):pad + col * (w + pad) + w] = u8[i]
  return grid


def save_image_grid(images, path: str, ncols: int | None = None):
  from PIL import Image
  grid = image_grid(images, ncols)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp"
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(tmp, format="PNG")
  os.replace(tmp, path)
