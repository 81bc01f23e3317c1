"""igan_jax.plots.refresh: PNGs from a metrics.jsonl as training leaves it (mixed rows, string
non-finite values, repeated steps after a resume, a truncated last line), written atomically."""
import json
import os

import pytest

from igan_jax import plots


def write_metrics(path, rows, tail=""):
  with open(path, "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
    f.write(tail)


def png_size(path):
  from PIL import Image
  with Image.open(path) as im:
    im.verify()
  with Image.open(path) as im:
    return im.format, im.size


def training_rows():
  rows = []
  for step in range(10, 110, 10):
    rows.append({"step": step, "d_loss": 1.0 / step, "g_loss": 0.5, "gp": 0.01, "it_per_s": 3.0,
                 "d_collapsed": False})
    if step % 30 == 0:
      rows.append({"step": step, "fid_classifier": 300.0 / step, "fid_classifier_ema": 200.0 / step,
                   "fid_classifier_floor": 0.4, "class_entropy": 2.0, "eval_seconds": 1.5})
  rows.append({"step": 55, "rollback": 1, "rolled_back_to": 50})
  rows.append({"step": 60, "d_loss": "nan", "g_loss": 0.25})  # resumed run, non-finite loss
  return rows


def test_read_metrics_tolerates_real_world_files(tmp_path):
  path = tmp_path / "metrics.jsonl"
  write_metrics(path, training_rows(), tail='{"step": 110, "d_loss": 0.0')  # killed mid-write
  s = plots.read_metrics(str(path))
  assert [p[0] for p in s["d_loss"]] == [10, 20, 30, 40, 50, 70, 80, 90, 100]  # 60: "nan" wins
  assert dict(s["g_loss"])[60] == 0.25  # the row written last wins
  assert [p[0] for p in s["fid_classifier"]] == [30, 60, 90]
  assert "d_collapsed" not in s and "step" not in s  # booleans are not series
  assert plots.read_metrics(str(tmp_path / "missing.jsonl")) == {}


def test_refresh_writes_both_plots_atomically(tmp_path):
  write_metrics(tmp_path / "metrics.jsonl", training_rows(), tail='{"step": 11')
  written = plots.refresh(str(tmp_path))
  out = tmp_path / "plots"
  assert sorted(written) == [str(out / "fid.png"), str(out / "losses.png")]
  for name in ("fid.png", "losses.png"):
    fmt, (w, h) = png_size(out / name)
    assert fmt == "PNG" and w > 100 and h > 100
  assert sorted(os.listdir(out)) == ["fid.png", "losses.png"]  # no temporary file left
  # Refreshing again replaces them (a new evaluation was logged).
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write("\n" + json.dumps({"step": 120, "fid_classifier": 1.0}) + "\n")
  before = os.stat(out / "fid.png").st_mtime_ns
  plots.refresh(str(tmp_path))
  assert os.stat(out / "fid.png").st_mtime_ns >= before
  assert sorted(os.listdir(out)) == ["fid.png", "losses.png"]


def test_refresh_without_evaluations_or_metrics(tmp_path):
  assert plots.refresh(str(tmp_path)) == []  # no metrics.jsonl yet
  assert not (tmp_path / "plots").exists()
  write_metrics(tmp_path / "metrics.jsonl", [{"step": 1, "d_loss": 1.0}])  # one row, no gp/FID
  assert plots.refresh(str(tmp_path)) == [str(tmp_path / "plots" / "losses.png")]
  assert png_size(tmp_path / "plots" / "losses.png")[0] == "PNG"


def test_refresh_leaves_no_temporary_file_when_rendering_fails(tmp_path, monkeypatch):
  write_metrics(tmp_path / "metrics.jsonl", training_rows())

  def broken(*a, **k):
    raise RuntimeError("disk full")
  from matplotlib.figure import Figure
  monkeypatch.setattr(Figure, "savefig", broken)
  with pytest.raises(RuntimeError, match="disk full"):
    plots.refresh(str(tmp_path))
  assert os.listdir(tmp_path / "plots") == []
