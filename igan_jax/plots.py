"""Plots of a run a person would rather look at than read: `refresh(workdir)` turns
`<workdir>/metrics.jsonl` into `<workdir>/plots/losses.png` and `<workdir>/plots/fid.png`.

Called after each evaluation during training (and usable on any workdir, even while its run is
writing). Robust to what a real metrics.jsonl holds:
  - rows carry different keys (loss rows, evaluation rows, rollback and collapse notes): each
    series takes the rows that have its key;
  - a non-finite value is logged as the string "nan"/"inf" (metric_writer._plain): not plotted;
  - a run killed mid-write leaves a truncated last line: unreadable lines are skipped;
  - a resumed or rolled-back run logs some steps again: the row written last wins, since it
    belongs to the run that went on.
Rendering uses matplotlib's Agg canvas directly (no pyplot, no display, no global state), and
each PNG is written to a temporary file and renamed, so a reader never sees half an image.
"""
from __future__ import annotations

import json
import math
import os

LOSS_KEYS = ("d_loss", "g_loss", "gp")
FID_PREFIX = "fid_"


def read_metrics(path: str) -> dict[str, list[tuple[int, float]]]:
  """{key: [(step, value), ...] sorted by step} of every finite number in metrics.jsonl."""
  series: dict[str, dict[int, float]] = {}
  try:
    f = open(path, encoding="utf-8", errors="replace")
  except FileNotFoundError:
    return {}
  with f:
    for line in f:
      try:
        row = json.loads(line)
        step = int(row["step"])
      except (ValueError, KeyError, TypeError):
        continue  # a truncated or foreign line
      for key, value in row.items():
        if isinstance(value, str) and value in ("nan", "inf", "-inf"):
          value = float(value)  # how metric_writer.MetricWriter writes a non-finite value
        if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
          continue
        if math.isfinite(value):
          series.setdefault(key, {})[step] = float(value)
        else:
          series.setdefault(key, {}).pop(step, None)
  return {k: sorted(v.items()) for k, v in series.items() if v}


def _save(fig, path: str):
  # matplotlib is imported where a figure is drawn (here and below), not with the module: it
  # takes seconds to import, and training imports plots.py whether or not it draws.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  FigureCanvasAgg(fig)
  tmp = f"{path}.tmp{os.getpid()}.png"  # same directory: os.replace is atomic
  try:
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _plot(ax, points, label, **style):
  steps, values = zip(*points)
  if len(points) == 1:
    style.setdefault("marker", "o")
  ax.plot(steps, values, label=label, **style)


def _losses_figure(series: dict, title: str):
  from matplotlib.figure import Figure  # late: see _save
  losses = [k for k in LOSS_KEYS[:2] if k in series]
  has_gp = "gp" in series
  rows = int(bool(losses)) + int(has_gp)
  fig = Figure(figsize=(8, 3.2 * rows), layout="constrained")
  axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
  if losses:
    for k in losses:
      _plot(axes[0], series[k], k, linewidth=1)
    axes[0].set_ylabel("loss")
    axes[0].legend(loc="best")
  if has_gp:
    # Its own panel: λ·GP and the adversarial losses live on different scales.
    _plot(axes[-1], series["gp"], "gp", linewidth=1, color="tab:green")
    axes[-1].set_ylabel("gradient penalty")
    axes[-1].legend(loc="best")
  axes[-1].set_xlabel("iteration")
  axes[0].set_title(title)
  for ax in axes:
    ax.grid(True, alpha=0.3)
  return fig


def _fid_figure(series: dict, keys: list[str], title: str):
  from matplotlib.figure import Figure  # late: see plots._save
  fig = Figure(figsize=(8, 4), layout="constrained")
  ax = fig.subplots()
  for k in keys:
    if k.endswith("_floor"):
      # The real-vs-real floor at the same N: a reference line, not a result.
      _plot(ax, series[k], k, linestyle="--", color="gray", linewidth=1)
      continue
    _plot(ax, series[k], k, linewidth=1.5, marker="." if len(series[k]) < 50 else None)
    step, value = min(series[k], key=lambda p: p[1])
    ax.annotate(f"{value:.3g}", (step, value), textcoords="offset points", xytext=(0, -12),
                ha="center", fontsize=8)
  values = [v for k in keys for _, v in series[k]]
  # FID falls over orders of magnitude early in training: a log axis keeps the end readable.
  if min(values) > 0 and max(values) / min(values) > 20:
    ax.set_yscale("log")
  ax.set_xlabel("iteration")
  ax.set_ylabel("FID (lower is better)")
  ax.set_title(title)
  ax.grid(True, alpha=0.3, which="both")
  ax.legend(loc="best")
  return fig


def refresh(workdir: str) -> list[str]:
  """(Re)writes the plots of `workdir` from its metrics.jsonl; returns the paths written.

  losses.png: d_loss and g_loss, and gp in a panel of its own, over iterations (whichever are
  logged). fid.png: every `fid_*` key (fid_<backbone>, _ema, and the _floor as a dashed line),
  each series' minimum annotated; written only once an evaluation has been logged.
  """
  workdir = os.path.abspath(workdir)
  series = read_metrics(os.path.join(workdir, "metrics.jsonl"))
  out_dir = os.path.join(workdir, "plots")
  title = os.path.basename(workdir.rstrip(os.sep))
  written = []
  figures = []
  if any(k in series for k in LOSS_KEYS):
    figures.append(("losses.png", lambda: _losses_figure(series, f"{title}: losses")))
  fid_keys = sorted(k for k in series if k.startswith(FID_PREFIX))
  if fid_keys:
    figures.append(("fid.png", lambda: _fid_figure(series, fid_keys, f"{title}: FID")))
  for name, make in figures:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    _save(make(), path)
    written.append(path)
  return written
