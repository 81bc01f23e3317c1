"""Run outputs a person reads: metrics.jsonl, TensorBoard event files, sample grids, progress.

`MetricWriter` appends each logged row to `<workdir>/metrics.jsonl` and writes every numeric
value of it as a TensorBoard scalar (tensorboardX: no TensorFlow at training time), the sample
grids as TensorBoard images, and the progress line: in a log file one plain line per logged row;
on a terminal one line rewritten in place after every host-visible group of steps.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time

import numpy as np
from PIL import Image
from tensorboardX import SummaryWriter

# How often tensorboardX's writer thread flushes the event file: a killed run loses at most this
# many seconds of TensorBoard events (metrics.jsonl is flushed row by row).
TENSORBOARD_FLUSH_SECONDS = 10

PROGRESS_KEYS = ("d_loss", "g_loss", "gp", "lr_d")  # a logged row's values on the progress line
LIVE_KEYS = ("d_loss", "g_loss", "gp")  # the last step's values on the live (terminal) line


class MetricWriter:
  """Writes each logged row to metrics.jsonl and TensorBoard, and the progress line to `stream`
  (stderr unless given)."""

  def __init__(self, workdir: str, total_steps: int, stream=None):
    self.total = total_steps
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"),
                             flush_secs=TENSORBOARD_FLUSH_SECONDS)
    self._progress = ProgressLine(total_steps, sys.stderr if stream is None else stream)

  def write(self, step: int, row: dict):
    """One row: as JSON in metrics.jsonl, and each numeric value as the scalar `key` at `step`."""
    plain = {"step": int(step), **{k: _plain(v) for k, v in row.items()}}
    self._jsonl.write(json.dumps(plain) + "\n")
    self._jsonl.flush()
    for key, value in row.items():
      value = _scalar(value)
      if value is not None:
        self._tb.add_scalar(key, value, int(step))

  def image(self, step: int, tag: str, grid: np.ndarray):
    """A uint8 (H, W, C) image (C = 1 or 3; image_grid's output) as the TensorBoard image `tag`."""
    self._tb.add_image(tag, np.asarray(grid, np.uint8), int(step), dataformats="HWC")

  def tick(self, step: int, steps: int, metrics: dict):
    """After a group of `steps` steps ending at `step`: the live line on a terminal (nothing
    otherwise). metrics: the group's metrics, each stacked along a leading axis of steps."""
    self._progress.tick(step, steps, metrics)

  def progress(self, step: int, row: dict):
    """The progress line of a logged row (averaged over the window since the previous one)."""
    self._progress.row(step, row)

  def message(self, text: str, stream=None):
    """A line for the person watching (a warning, an evaluation's numbers) on `stream` (stdout
    unless given): on a terminal the live progress line is cleared first, so the message is not
    appended to it; the next group of steps draws the live line again below."""
    self._progress.clear()
    print(text, file=sys.stdout if stream is None else stream, flush=True)

  def close(self):
    self._progress.close()
    self._jsonl.close()
    self._tb.close()


class ProgressLine:
  """`[igan_jax] step S/T  d_loss=…  g_loss=…  X it/s  eta …` lines on `stream`.

  Not a terminal (a log file, a pipe): one line per logged row, nothing in between. On a
  terminal the same lines are printed, and below the last one a live line is rewritten in place
  (`\\r`) after every group of steps, with the last step's losses and the speed since the
  previous logged row.
  """

  def __init__(self, total_steps: int, stream):
    self.total = total_steps
    self.stream = stream
    self.live = _isatty(stream)
    self._pending = False  # a live line without its newline is on the terminal
    self._window_steps, self._window_start = 0, time.perf_counter()

  def row(self, step: int, row: dict):
    its = row.get("it_per_s", float("nan"))
    eta = (self.total - step) / its if its and its > 0 else float("nan")
    parts = " ".join(f"{k}={row[k]:.4g}" for k in PROGRESS_KEYS if k in row)
    line = (f"[igan_jax] step {step}/{self.total}  {parts}  {its:.3f} it/s  "
            f"eta {_fmt_time(eta)}")
    if self.live:
      # Replaces the live line; the cleared tail is what a longer live line leaves behind.
      self.stream.write("\r" + line + "\x1b[K\n")
      self.stream.flush()
      self._pending = False
    else:
      print(line, file=self.stream, flush=True)
    self._window_steps, self._window_start = 0, time.perf_counter()

  def tick(self, step: int, steps: int, metrics: dict):
    if not self.live:
      return  # a log file gets the logged rows only (and no extra device-to-host transfer)
    self._window_steps += steps
    elapsed = time.perf_counter() - self._window_start
    its = self._window_steps / elapsed if elapsed > 0 else float("nan")
    eta = (self.total - step) / its if its > 0 else float("nan")
    last = {k: float(np.asarray(metrics[k]).reshape(-1)[-1]) for k in LIVE_KEYS if k in metrics}
    parts = " ".join(f"{k}={v:.4g}" for k, v in last.items())
    line = (f"[igan_jax] step {step}/{self.total}  {parts}  {its:.3f} it/s  "
            f"eta {_fmt_time(eta)}")
    # A line wider than the terminal wraps, and `\r` would then rewrite only its last row.
    width = shutil.get_terminal_size(fallback=(120, 24)).columns
    self.stream.write("\r" + line[:max(width - 1, 1)] + "\x1b[K")
    self.stream.flush()
    self._pending = True

  def clear(self):
    """Erases the live line (a terminal only), so that what is printed next starts at column 0
    of an empty line."""
    if self._pending:
      self.stream.write("\r\x1b[K")
      self.stream.flush()
      self._pending = False

  def close(self):
    if self._pending:  # the shell prompt or a traceback starts on a line of its own
      self.stream.write("\n")
      self.stream.flush()
      self._pending = False


def _isatty(stream) -> bool:
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError):  # no isatty, or a closed file
    return False


def _plain(v):
  v = np.asarray(v).item() if not isinstance(v, (str, bool)) else v
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)  # JSON has no NaN/inf: keep it visible as a string
  return v


def _scalar(v) -> float | None:
  """A row value as a TensorBoard scalar: numbers, booleans (0/1) and numeric 0-d or 1-element
  arrays, non-finite ones included; None for anything else (text)."""
  if isinstance(v, str):
    return None
  a = np.asarray(v)
  if a.size != 1 or a.dtype.kind not in "biuf":
    return None
  return float(a.reshape(()))


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


def save_image_grid(images, path: str, ncols: int | None = None) -> np.ndarray:
  """Writes image_grid(images, ncols) to `path` as a PNG (atomically); returns the grid, for
  MetricWriter.image."""
  grid = image_grid(images, ncols)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp"
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(tmp, format="PNG")
  os.replace(tmp, path)
  return grid
