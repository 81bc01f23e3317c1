"""A run report: one JSON object of the numbers that say whether a run is healthy and good.

    python -m igan_jax.report --workdir=runs/fashion_mnist [--step=N] [--num_samples=10000]

Read from the workdir, nothing written:
- log (metrics.jsonl): the spike ratio, max / median of d_loss over the logged windows past the
  first 10 % of the run's logged steps (the opening transient is not a spike; None for a loss
  whose median is not positive, a Wasserstein critic's); the largest
  logged mean discriminator gradient norm in the same window; rollbacks; the training time the
  log accounts for (Σ log_every / it_per_s).
- grid (samples/step_XXXXXX.png, the last one or --step's): the share of spectral power at
  period 2 (`period2_power`, checkerboard artefacts: the Nyquist row and column of each
  image's 2-D spectrum, mean removed, over all images' power; real Fashion-MNIST 0.004), the same
  at period 4 (`period4_power`, the patch texture of a kernel = stride 4 up-sampler; real
  0.025) and the mean brightness in [0, 1] (real Fashion-MNIST: 0.286).
- samples (the checkpoint at --step, default the latest; --num_samples=0 skips this): N images
  from the evaluation latents (seed 0, inference mode) through the project's Fashion-MNIST
  classifier (evaluation/classifier.py): FID against N test images, the class entropy of its
  predictions (nats, max ln 10 = 2.303) and its mean confidence (max softmax; real test
  images: ~0.93), precision and recall.
  Only for datasets the classifier covers (28×28 grayscale); otherwise "samples" says why not.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import platform
import re
import sys
from typing import Any

import numpy as np
from PIL import Image

from igan_jax import config as config_lib
from igan_jax.errors import UserError
from igan_jax.evaluation.settings import EvaluationError

GRID_PAD = 2  # metric_writer.image_grid's padding between tiles
SPIKE_SKIP = 0.1  # the share of logged steps before the spike window starts


class ReportError(UserError, FileNotFoundError):
  """What the report reads is not there (not a training workdir, no grid of that step)."""


def read_log(workdir: str) -> list[dict]:
  """The rows of <workdir>/metrics.jsonl that carry training losses, in step order."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    raise ReportError(f"{path} does not exist: is {workdir} a training workdir?")
  rows = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError:  # a line cut by a kill; the rest is still good
        continue
      if "d_loss" in row:
        rows.append(row)
  # A resumed run may log a step again: keep the last record of each step.
  by_step = {int(r["step"]): r for r in rows}
  return [by_step[s] for s in sorted(by_step)]


def log_summary(rows: list[dict], skip: float = SPIKE_SKIP) -> dict:
  """Spike ratio, the largest D gradient norm and the training time, from logged rows."""
  if not rows:
    return dict(rows=0)
  last = rows[-1]["step"]
  window = [r for r in rows if r["step"] > skip * last] or rows
  d = np.asarray([r["d_loss"] for r in window], np.float64)
  i_max = int(np.argmax(d))
  out = dict(rows=len(rows), last_step=last, window_from_step=window[0]["step"],
             # A ratio of losses only means something for a loss that stays positive (least
             # squares, BCE); a Wasserstein critic's loss is negative: no ratio (None).
             spike_ratio=float(d.max() / np.median(d)) if np.median(d) > 0 else None,
             d_loss_max=float(d.max()), d_loss_max_step=window[i_max]["step"],
             d_loss_median=float(np.median(d)),
             d_loss_last=rows[-1]["d_loss"], g_loss_last=rows[-1]["g_loss"])
  if "d_grad_norm" in window[0]:
    g = np.asarray([r["d_grad_norm"] for r in window], np.float64)
    out.update(max_d_grad_norm=float(g.max()), max_d_grad_norm_step=window[int(np.argmax(g))]
               ["step"], median_d_grad_norm=float(np.median(g)))
  seconds, prev = 0.0, 0
  for r in rows:
    if r.get("it_per_s"):
      seconds += (r["step"] - prev) / r["it_per_s"]
    prev = r["step"]
  out["train_seconds_from_log"] = round(seconds, 1)
  out["rollbacks"] = int(max(r.get("rollbacks", 0) for r in rows))
  return out


def grid_tiles(grid: np.ndarray, size: int, pad: int = GRID_PAD) -> np.ndarray:
  """The (n, size, size) or (n, size, size, C) uint8 tiles of a sample grid (image_grid's
  layout); empty cells (all padding white) are dropped."""
  rows = (grid.shape[0] - pad) // (size + pad)
  cols = (grid.shape[1] - pad) // (size + pad)
  if rows < 1 or cols < 1 or rows * (size + pad) + pad != grid.shape[0] \
      or cols * (size + pad) + pad != grid.shape[1]:
    raise ValueError(f"a {grid.shape[:2]} grid is not a grid of {size}×{size} tiles "
                     f"with padding {pad}")
  tiles = []
  for r in range(rows):
    for c in range(cols):
      y, x = pad + r * (size + pad), pad + c * (size + pad)
      t = grid[y:y + size, x:x + size]
      if not np.all(t == 255):
        tiles.append(t)
  return np.stack(tiles)


def period_power(images: np.ndarray, period: int) -> float:
  """Share of the spectral power (mean removed per image and channel) at `period` pixels in
  either axis: the rows and columns ±H/period, ±W/period of the 2-D DFT. Period 2 is the Nyquist
  row and column, where a checkerboard (one-pixel alternation) puts all its power; period 4 is
  where a kernel = stride 4 up-sampler's patch texture goes. images: (n, H, W) or (n, H, W, C)
  with H and W multiples of `period`."""
  x = np.asarray(images, np.float64)
  if x.ndim == 3:
    x = x[..., None]
  h, w = x.shape[1:3]
  if h % period or w % period:
    raise ValueError(f"period-{period} power needs image sides that are multiples of {period}, "
                     f"got {h}×{w}")
  x = x - x.mean(axis=(1, 2), keepdims=True)
  p = np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2
  total = p.sum()
  if total == 0:
    return 0.0
  mask = np.zeros((h, w), bool)
  mask[[h // period, -(h // period)], :] = True
  mask[:, [w // period, -(w // period)]] = True
  return float(p[:, mask].sum() / total)


def period2_power(images: np.ndarray) -> float:
  """period_power(images, 2): the checkerboard share (the even-sides error says "even")."""
  x = np.asarray(images)
  if x.shape[1] % 2 or x.shape[2] % 2:
    raise ValueError(f"period-2 power needs even image sides, got {x.shape[1]}×{x.shape[2]}")
  return period_power(x, 2)


def find_grid(workdir: str, step: int | None = None) -> tuple[str, int]:
  """(path, step) of the sample grid at `step`, or of the last one."""
  paths = glob.glob(os.path.join(workdir, "samples", "step_*.png"))
  steps = {int(m.group(1)): p for p in paths
           if (m := re.search(r"step_(\d+)\.png$", p))}
  if not steps:
    raise ReportError(f"no sample grid in {workdir}/samples")
  if step is None:
    step = max(steps)
  if step not in steps:
    raise ReportError(f"no sample grid for step {step} in {workdir}/samples "
                            f"(there are: {sorted(steps)[-5:]})")
  return steps[step], step


def grid_summary(path: str, size: int) -> dict:
  grid = np.asarray(Image.open(path))
  tiles = grid_tiles(grid, size)
  return dict(path=path, images=len(tiles), period2_power=period2_power(tiles),
              period4_power=period_power(tiles, 4) if size % 4 == 0 else None,
              brightness=float(tiles.mean() / 255.0))


def sample_summary(config, workdir: str, step: int | None, num_samples: int) -> dict:
  """Classifier FID, class entropy and confidence of num_samples generated images (seed 0):
  `evaluate_workdir`, which restores the checkpoint read-only (checkpoint.restore_read_only)."""
  # Late: the evaluation loads JAX and Flax (~3 s), which a report without samples (the
  # reproduction table's) does not need.
  from igan_jax.evaluation import workdir as evaluation_workdir
  try:
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the JSON alone
      record = evaluation_workdir.evaluate_workdir(
          config, workdir, step=step, num_samples=num_samples, seeds=(0,),
          backbones=("classifier",), write=False, verbose=False)
  except EvaluationError as e:  # e.g. colour images: no classifier for them
    return dict(skipped=str(e))
  if "classifier" not in record["backbones"]:
    return dict(skipped=record["skipped"].get("classifier", "classifier unavailable"))
  b = record["backbones"]["classifier"]
  cm = record["class_metrics"]["mean"]
  return dict(step=record["step"], n=b["protocol"]["n"], classifier_fid=b["mean"]["fid"],
              floor_fid=b["floor"]["fid"], precision=b["mean"]["precision"],
              recall=b["mean"]["recall"], class_entropy=cm["entropy"],
              mean_confidence=cm["mean_confidence"], class_share=cm["share"])


def machine() -> dict:
  info = dict(processor=platform.processor() or platform.machine())
  try:
    with open("/proc/cpuinfo") as f:
      text = f.read()
    for key in ("model name", "cpu family"):
      m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.M)
      if m:
        info[key.replace(" ", "_")] = m.group(1).strip()
  except OSError:
    pass
  info["cores"] = os.cpu_count()
  return info


def load_run_config(workdir: str):
  """The config a training workdir was run with (<workdir>/config.json, missing keys filled)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ReportError(f"{path} does not exist: is {workdir} a training workdir?")
  with open(path) as f:
    return config_lib.from_saved(json.load(f))


def run_report(workdir: str, step: int | None = None, num_samples: int = 10_000,
               config=None) -> dict[str, Any]:
  """The report of the run in `workdir` (see the module docstring)."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if config is None:
    config = load_run_config(workdir)
  report: dict[str, Any] = dict(workdir=workdir, model=config.model.name,
                                dataset=config.data.name, machine=machine())
  report["log"] = log_summary(read_log(workdir))
  grid_path, grid_step = find_grid(workdir, step)
  report["grid"] = dict(step=grid_step, **grid_summary(grid_path, config.data.resolution))
  if num_samples > 0:
    report["samples"] = sample_summary(config, workdir, step, num_samples)
  return report


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m igan_jax.report", description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True, help="the run's workdir")
  p.add_argument("--step", type=int, default=None,
                 help="checkpoint and grid step (default: the latest of each)")
  p.add_argument("--num_samples", type=int, default=10_000,
                 help="generated images for the classifier metrics (0 = skip them)")
  args = p.parse_args(argv)
  try:
    report = run_report(args.workdir, args.step, args.num_samples)
  except (ValueError, UserError) as e:  # what the user can fix (ReportError included)
    print(f"igan_jax.report: error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(report, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
