"""The run report (igan_jax/report.py): each number on inputs whose answer is known by hand, and
the command on a real CLI workdir."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from igan_jax import report
from igan_jax.metric_writer import image_grid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_period2_power_of_known_patterns():
  i, j = np.indices((28, 28))
  checker = np.where((i + j) % 2 == 0, 1.0, -1.0)[None]
  stripes = np.where(j % 2 == 0, 0.5, -0.5)[None]
  smooth = np.cos(2 * np.pi * i / 28)[None] + np.sin(2 * np.pi * 3 * j / 28)[None]
  assert report.period2_power(checker) == pytest.approx(1.0)
  assert report.period2_power(stripes) == pytest.approx(1.0)
  assert report.period2_power(smooth) == pytest.approx(0.0, abs=1e-12)
  # Power-weighted over the images: one checkerboard of amplitude 1 and one smooth image of
  # the same power give one half. A constant image has no power (mean removed).
  both = np.concatenate([checker, smooth / np.sqrt(np.mean(smooth ** 2))])
  assert report.period2_power(both) == pytest.approx(0.5, rel=1e-6)
  assert report.period2_power(np.ones((2, 4, 4))) == 0.0
  with pytest.raises(ValueError, match="even"):
    report.period2_power(np.zeros((1, 5, 5)))


def test_period4_power_of_known_patterns():
  i, j = np.indices((28, 28))
  stripes4 = np.cos(2 * np.pi * j / 4)[None]            # period 4 along the width
  blocks4 = np.where((i // 2 + j // 2) % 2 == 0, 1.0, -1.0)[None]  # 2×2 blocks: period 4
  checker = np.where((i + j) % 2 == 0, 1.0, -1.0)[None]
  assert report.period_power(stripes4, 4) == pytest.approx(1.0)
  assert report.period_power(checker, 4) == pytest.approx(0.0, abs=1e-12)
  # A square wave of period 4 has harmonics at odd multiples of the base frequency: at 28 px
  # the 3rd (k = 21 ≡ −7) is aliased back onto ±7, so all of its power is at period 4.
  assert report.period_power(blocks4, 4) == pytest.approx(1.0)
  with pytest.raises(ValueError, match="multiples of 4"):
    report.period_power(np.zeros((1, 6, 6)), 4)


def test_grid_tiles_inverts_image_grid():
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (10, 28, 28, 1)).astype(np.float32)
  grid = image_grid(images, ncols=4)  # 3 rows, the last one with 2 empty cells
  tiles = report.grid_tiles(grid[..., 0], 28)
  assert tiles.shape == (10, 28, 28)
  expected = np.clip(np.round((images[..., 0] + 1) * 127.5), 0, 255).astype(np.uint8)
  np.testing.assert_array_equal(tiles, expected)
  with pytest.raises(ValueError, match="not a grid"):
    report.grid_tiles(grid[..., 0], 27)


def _rows(d_losses, every=10):
  return [dict(step=every * (k + 1), d_loss=d, g_loss=1.0, d_grad_norm=float(k), it_per_s=2.0)
          for k, d in enumerate(d_losses)]


def test_log_summary_spike_ratio_skips_the_first_tenth():
  # 20 windows: a large opening transient (step 10, the first 10 %), then 1.0 with one 6.0.
  d = [50.0, 1.0] + [1.0] * 10 + [6.0] + [1.0] * 7
  s = report.log_summary(_rows(d))
  assert s["window_from_step"] == 30 and s["last_step"] == 200
  assert s["spike_ratio"] == pytest.approx(6.0)
  assert s["d_loss_max_step"] == 130
  assert s["max_d_grad_norm"] == 19.0 and s["max_d_grad_norm_step"] == 200
  assert s["train_seconds_from_log"] == pytest.approx(200 / 2.0)
  assert report.log_summary([]) == dict(rows=0)
  # A Wasserstein critic's loss is negative: a ratio would say nothing (None, "—" in tables).
  assert report.log_summary(_rows([-5.0] * 20))["spike_ratio"] is None


def test_read_log_keeps_the_last_record_of_a_step_and_skips_cut_lines(tmp_path):
  lines = [dict(step=10, d_loss=1.0, g_loss=1.0), dict(step=20, d_loss=2.0, g_loss=1.0),
           dict(step=20, fid_classifier=3.0), dict(step=20, d_loss=3.0, g_loss=1.0)]
  text = "\n".join(json.dumps(x) for x in lines) + '\n{"step": 30, "d_lo'
  (tmp_path / "metrics.jsonl").write_text(text)
  rows = report.read_log(str(tmp_path))
  assert [(r["step"], r["d_loss"]) for r in rows] == [(10, 1.0), (20, 3.0)]
  with pytest.raises(report.ReportError, match="training workdir"):
    report.read_log(str(tmp_path / "nope"))
  # One the user can fix (the command line's exit status 2), and still a FileNotFoundError.
  from igan_jax.errors import UserError
  assert issubclass(report.ReportError, UserError)
  assert issubclass(report.ReportError, FileNotFoundError)


def test_find_grid(tmp_path):
  (tmp_path / "samples").mkdir()
  for s in (100, 200):
    (tmp_path / "samples" / f"step_{s:06d}.png").write_bytes(b"")
  assert report.find_grid(str(tmp_path))[1] == 200
  assert report.find_grid(str(tmp_path), 100)[1] == 100
  with pytest.raises(report.ReportError, match="step 150"):
    report.find_grid(str(tmp_path), 150)


@pytest.mark.slow
def test_report_command_on_a_cli_workdir(trained_workdir):
  """The command on a real (mock-data) run: JSON on stdout; the classifier part when the real
  test split is prepared (make test prepares it), else the log and grid parts alone."""
  from igan_jax import data
  workdir, _ = trained_workdir
  try:
    data.load_images("fashion_mnist", "test", None, 28)
    num_samples = 200
  except Exception:  # pylint: disable=broad-except
    num_samples = 0
  r = subprocess.run([sys.executable, "-m", "igan_jax.report", f"--workdir={workdir}",
                      f"--num_samples={num_samples}"], cwd=ROOT, capture_output=True, text=True,
                     timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert r.returncode == 0, r.stderr[-2000:]
  out = json.loads(r.stdout)
  assert out["log"]["last_step"] == 4 and out["grid"]["step"] == 4
  assert 0 <= out["grid"]["period2_power"] <= 1 and 0 <= out["grid"]["brightness"] <= 1
  assert out["grid"]["images"] == 4
  if num_samples:
    s = out["samples"]
    assert s["n"] == 200 and s["classifier_fid"] > s["floor_fid"]
    assert 0 <= s["class_entropy"] <= np.log(10) + 1e-9 and 0.1 <= s["mean_confidence"] <= 1
  bad = subprocess.run([sys.executable, "-m", "igan_jax.report", f"--workdir={workdir}/nope"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2 and "training workdir" in bad.stderr
