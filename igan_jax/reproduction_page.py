"""The reproduction table's page: per-model means, every run, the curves, the grids, the commands.

`python -m igan_jax.reproduce` (reproduce.py) trains and evaluates the runs and summarises each
one; this module turns those summaries into the table (mean ± sd over seeds per model) and writes
`<root>/reproduction.md` and `<root>/reproduction.json`, with the last grid of every run and all
FID-during-training curves in one figure under `<root>/reproduction/`, beside the page
(`copy_to_docs` copies the page and its images to a docs directory).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from typing import Any, Sequence

IMAGES = "reproduction"  # <root>/reproduction/: the grids and the curves, beside the page
LABELS = {"igan": "IGAN", "dcgan": "DCGAN", "wgan_gp": "WGAN-GP", "igan_v2": "IGAN_V2",
          "igan_vn": "IGAN_VN", "igan_paper": "IGAN (paper-literal recipe)"}
# Columns of the table: (key in a run's summary, header, format).
COLUMNS = (
    ("classifier_fid", "classifier FID", "{:.1f}"),
    ("inception_fid", "Inception FID", "{:.1f}"),
    ("inception_kid", "Inception KID ×10³", "{:.1f}"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("class_entropy", "class entropy (nats)", "{:.3f}"),
    ("mean_confidence", "confidence", "{:.3f}"),
    ("spike_ratio", "spike ratio", "{:.2f}"),
    ("period2_power", "period-2 power", "{:.4f}"),
    ("period4_power", "period-4 power", "{:.4f}"),
    ("train_minutes", "training minutes", "{:.1f}"),
)


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
  """Mean and sample standard deviation (N − 1 divisor; None for one value)."""
  n = len(values)
  mean = sum(values) / n
  if n < 2:
    return mean, None
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def row_of(summary: dict) -> str:
  """The table row a run belongs to: its row name (a table of changes), else its variant."""
  return summary.get("row") or summary["variant"]


def aggregate(summaries: Sequence[dict], labels: dict | None = None) -> list[dict]:
  """Per row (a model, or a change of a model; in first-seen order): n runs and mean / sd of
  every column present in all."""
  labels = LABELS if labels is None else labels
  rows = []
  for name in dict.fromkeys(row_of(s) for s in summaries):
    runs = [s for s in summaries if row_of(s) == name]
    row: dict[str, Any] = dict(variant=runs[0]["variant"], row=name,
                               label=labels.get(name, name), seeds=[r["seed"] for r in runs])
    for key, _, _ in COLUMNS + (("classifier_floor", "", ""), ("inception_floor", "", ""),
                                ("inception_kid_floor", "", ""), ("inception_n", "", ""),
                                ("classifier_n", "", ""), ("brightness", "", "")):
      values = [r[key] for r in runs if r.get(key) is not None]
      if len(values) == len(runs):
        row[key] = mean_sd(values)
    rows.append(row)
  return rows


def _cell(value, fmt: str) -> str:
  if value is None:
    return "—"
  mean, sd = value
  return fmt.format(mean) + ("" if sd is None else " ± " + fmt.format(sd))


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple] = COLUMNS,
                   first: str = "model") -> str:
  """The table: one line per row (`first` names the column of labels), mean ± sd over its
  seeds."""
  header = [first, "seeds"] + [h for _, h, _ in columns]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    cells = [row["label"], str(len(row["seeds"]))]
    cells += [_cell(row.get(key), fmt) for key, _, fmt in columns]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def runs_table(summaries: Sequence[dict], columns: Sequence[tuple] = COLUMNS) -> str:
  """Every run on its own line (the numbers behind the means)."""
  keys = list(columns)
  header = ["run"] + [h for _, h, _ in keys] + ["machine"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for s in summaries:
    cells = [s["run"]] + [("—" if s.get(k) is None else f.format(s[k])) for k, _, f in keys]
    cells.append("; ".join(s["machines"]) or "not recorded")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def fid_curves_figure(summaries: Sequence[dict], path: str) -> str | None:
  """All runs' FID-during-training curves in one figure, one colour per model."""
  if not any(s["fid_curve"] for s in summaries):
    return None
  from matplotlib.figure import Figure  # late: seconds to import (see plots._save)
  fig = Figure(figsize=(8, 4.5), layout="constrained")
  ax = fig.subplots()
  colours = {}
  palette = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")
  for s in summaries:
    if not s["fid_curve"]:
      continue
    colour = colours.setdefault(row_of(s), palette[len(colours) % len(palette)])
    steps, values = zip(*s["fid_curve"])
    label = LABELS.get(row_of(s), row_of(s)) if s["seed"] == min(
        t["seed"] for t in summaries if row_of(t) == row_of(s)) else None
    ax.plot(steps, values, color=colour, alpha=0.8, linewidth=1.3, marker=".", label=label)
  ax.set_xlabel("iteration")
  ax.set_ylabel("classifier FID, N = 2,000 (lower is better)")
  ax.set_yscale("log")
  ax.grid(True, alpha=0.3, which="both")
  ax.legend(loc="best")
  ax.set_title("FID during training, every seed")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path + ".tmp.png", dpi=110)
  os.replace(path + ".tmp.png", path)
  return path


def write_page(root: str, rows: list[dict], summaries: list[dict], iterations: int,
               protocol: dict, commands: list[str], train_commands: Sequence[str]) -> str:
  """Writes <root>/reproduction.md and .json, the grids and the curves (<root>/reproduction/);
  returns the page's path. `commands`: the flags of the reproduce command; `train_commands`:
  each run's training command line as the page shows it."""
  grid_dir = os.path.join(root, IMAGES)
  os.makedirs(grid_dir, exist_ok=True)
  for s in summaries:
    shutil.copyfile(s["grid"], os.path.join(grid_dir, f"{s['run']}.png"))
  curves = fid_curves_figure(summaries, os.path.join(grid_dir, "fid_curves.png"))
  floors = []
  for key, label in (("classifier_floor", "classifier"), ("inception_floor", "Inception")):
    vals = [s[key] for s in summaries if s.get(key) is not None]
    if vals:
      floors.append(f"{label} FID {min(vals):.2f}")
  lines = [
      f"# Fashion-MNIST reproduction table ({iterations:,} iterations per run)", "",
      "Generated by `python -m igan_jax.reproduce` (the command below); every number comes from "
      "the runs' own workdirs. Mean ± sd over training seeds; each run evaluated at its last "
      f"checkpoint (step {iterations:,}) with latent seed 0: classifier features at N = "
      f"{protocol['classifier']:,} generated vs {protocol['classifier']:,} test images"
      + (f", FID Inception-V3 at N = {protocol['inception']:,} (KID on the same features)"
         if protocol.get("inception") else "") + ". "
      f"Real-vs-real floors at the same N: {', '.join(floors) or '—'}.",
      "", markdown_table(rows), "",
      "Spike ratio: max / median of the logged d_loss past the first 10 % of the run; period-2 "
      "and period-4 power: the share of the last sample grid's spectral power at those periods "
      "(checkerboard and patch textures; real Fashion-MNIST 0.004 and 0.025); training minutes: "
      "the log's Σ iterations / speed (evaluations excluded).", "",
      "## Every run", "", runs_table(summaries), "",
  ]
  if curves:
    lines += ["## FID during training", "", "![FID curves](reproduction/fid_curves.png)", ""]
  lines += ["## Last sample grids", ""]
  for s in summaries:
    lines.append(f"**{s['run']}** (step {s['step']:,})  ")
    lines.append(f"![{s['run']}](reproduction/{s['run']}.png)")
    lines.append("")
  lines += commands_section("python -m igan_jax.reproduce " + " ".join(commands), train_commands)
  return save_page(root, "reproduction", lines, dict(iterations=iterations, protocol=protocol,
                                                      models=rows, runs=summaries))


def commands_section(command: str, train_commands: Sequence[str]) -> list[str]:
  """A page's last section: the command that made it and each training command it started."""
  return ["## Commands", "", "```bash", command, "```", "", "Each training run it started:", "",
          "```bash", *train_commands, "```", ""]


def save_page(root: str, stem: str, lines: Sequence[str], data: dict) -> str:
  """Writes <root>/<stem>.md (whole or not at all: a temporary file renamed) and the numbers
  behind it as <root>/<stem>.json; returns the page's path."""
  page = os.path.join(root, f"{stem}.md")
  with open(page + ".tmp", "w") as f:
    f.write("\n".join(lines))
  os.replace(page + ".tmp", page)
  with open(os.path.join(root, f"{stem}.json"), "w") as f:
    json.dump(data, f, indent=2, default=list)
  return page


def copy_to_docs(root: str, summaries: Sequence[dict], docs: str) -> str:
  """docs/reproduction.md with its images under docs/reproduction/ (the page names paths only
  as the command was given them: a relative --root keeps this machine's paths out of it)."""
  img_dir = os.path.join(docs, "reproduction")
  os.makedirs(img_dir, exist_ok=True)
  for s in summaries:
    shutil.copyfile(os.path.join(root, IMAGES, f"{s['run']}.png"),
                    os.path.join(img_dir, f"{s['run']}.png"))
  curves = os.path.join(root, IMAGES, "fid_curves.png")
  if os.path.exists(curves):
    shutil.copyfile(curves, os.path.join(img_dir, "fid_curves.png"))
  target = os.path.join(docs, "reproduction.md")
  with open(os.path.join(root, "reproduction.md")) as f:
    text = f.read()
  with open(target, "w") as f:
    f.write(text)
  return target

