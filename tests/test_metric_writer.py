"""igan_jax.metric_writer: metrics.jsonl rows, TensorBoard scalars and images read back with
TensorBoard's own reader, and the progress line in a log file and on a terminal."""
import io
import json
import math
import os
import sys
import types

import numpy as np
import pytest
from PIL import Image

from helpers import tiny_config
from igan_jax.metric_writer import MetricWriter, image_grid, save_image_grid

# TensorBoard's reader imports TensorFlow when it is installed (6 s here) unless this marker
# module exists; then it reads event files with its own stub of the same record reader (0.3 s).
sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def read_tensorboard(logdir):
  events = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
  events.Reload()
  return events


class TerminalIO(io.StringIO):
  """A StringIO that says it is a terminal."""

  def isatty(self):
    return True


def test_every_numeric_value_is_a_scalar_and_the_grid_an_image(tmp_path):
  writer = MetricWriter(str(tmp_path), total_steps=4, stream=io.StringIO())
  writer.write(2, {"d_loss": np.float32(0.5), "g_loss": 1.25, "lr_d": 2e-4, "it_per_s": 3.0,
                   "rollbacks": 0, "d_collapsed": False, "gp": float("nan")})
  writer.write(4, {"d_loss": np.asarray(0.25), "fid_classifier": 12.5,
                   "fid_classifier_floor": 0.75, "best_step": 4, "backbone": "classifier"})
  images = np.linspace(-1, 1, 4 * 5 * 7 * 3).reshape(4, 5, 7, 3)
  grid = save_image_grid(images, str(tmp_path / "samples" / "step_000004.png"), ncols=2)
  writer.image(4, "samples", grid)
  writer.close()

  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert rows == [
      {"step": 2, "d_loss": 0.5, "g_loss": 1.25, "lr_d": 2e-4, "it_per_s": 3.0, "rollbacks": 0,
       "d_collapsed": False, "gp": "nan"},
      {"step": 4, "d_loss": 0.25, "fid_classifier": 12.5, "fid_classifier_floor": 0.75,
       "best_step": 4, "backbone": "classifier"}]

  events = read_tensorboard(tmp_path / "tensorboard")
  assert sorted(events.Tags()["scalars"]) == sorted(
      ["d_loss", "g_loss", "lr_d", "it_per_s", "rollbacks", "d_collapsed", "gp",
       "fid_classifier", "fid_classifier_floor", "best_step"])  # text ("backbone") is not
  series = {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}
  assert series["d_loss"] == [(2, 0.5), (4, 0.25)]
  assert series["g_loss"] == [(2, 1.25)]
  assert series["lr_d"] == [(2, pytest.approx(2e-4))]  # stored as float32
  assert series["d_collapsed"] == [(2, 0.0)] and series["best_step"] == [(4, 4.0)]
  assert series["fid_classifier_floor"] == [(4, 0.75)]
  assert [s for s, _ in series["gp"]] == [2] and math.isnan(series["gp"][0][1])

  assert events.Tags()["images"] == ["samples"]
  (image,) = events.Images("samples")
  assert image.step == 4
  assert (image.height, image.width) == grid.shape[:2] == (2 * 7 + 2, 2 * 9 + 2)


def test_log_file_gets_one_plain_line_per_logged_row(tmp_path):
  out = io.StringIO()
  writer = MetricWriter(str(tmp_path), total_steps=10, stream=out)
  writer.tick(5, 5, {"d_loss": np.array([1.0, 0.5]), "g_loss": np.array([2.0, 1.5])})
  assert out.getvalue() == ""  # between logged rows a log file gets nothing
  writer.progress(10, {"d_loss": 0.5, "g_loss": 1.5, "gp": 0.01, "lr_d": 2e-4, "lr_g": 3e-4,
                       "it_per_s": 2.0})
  writer.close()
  # The format other tools read from train.log: keep it as it is.
  assert out.getvalue() == ("[igan_jax] step 10/10  d_loss=0.5 g_loss=1.5 gp=0.01 lr_d=0.0002  "
                            "2.000 it/s  eta 0m00s\n")


def test_terminal_line_updates_in_place_after_each_group(tmp_path):
  out = TerminalIO()
  writer = MetricWriter(str(tmp_path), total_steps=100, stream=out)
  writer.tick(2, 2, {"d_loss": np.array([1.0, 0.75]), "g_loss": np.array([2.0, 1.5]),
                     "finite": np.array([True, True])})
  first = out.getvalue()
  assert first.startswith("\r[igan_jax] step 2/100  d_loss=0.75 g_loss=1.5  ")
  assert " it/s  eta " in first and first.endswith("\x1b[K") and "\n" not in first
  writer.tick(4, 2, {"d_loss": np.array([0.5, 0.25]), "g_loss": np.array([1.0, 0.5])})
  second = out.getvalue()[len(first):]
  assert second.startswith("\r[igan_jax] step 4/100  d_loss=0.25 g_loss=0.5  ")
  assert "\n" not in second

  writer.progress(4, {"d_loss": 0.6, "g_loss": 1.2, "it_per_s": 4.0})
  logged = out.getvalue()[len(first) + len(second):]
  assert logged == "\r[igan_jax] step 4/100  d_loss=0.6 g_loss=1.2  4.000 it/s  eta 0m24s\x1b[K\n"

  writer.tick(6, 2, {"d_loss": np.array([0.5, 0.4]), "g_loss": np.array([1.0, 0.9])})
  writer.close()
  assert out.getvalue().endswith("\n")  # a live line left open is ended on close


def test_a_message_mid_window_gets_a_line_of_its_own(tmp_path):
  out = TerminalIO()
  writer = MetricWriter(str(tmp_path), total_steps=100, stream=out)
  writer.message("nothing live yet", stream=out)
  assert out.getvalue() == "nothing live yet\n"
  writer.tick(2, 2, {"d_loss": np.array([1.0, 0.75]), "g_loss": np.array([2.0, 1.5])})
  live = out.getvalue()
  writer.message("[igan_jax] step 2 fid_classifier=300.0", stream=out)
  assert out.getvalue()[len(live):] == "\r\x1b[K[igan_jax] step 2 fid_classifier=300.0\n"
  writer.close()  # no live line is open: nothing more
  assert out.getvalue().endswith("fid_classifier=300.0\n")


def test_live_line_fits_the_terminal(tmp_path, monkeypatch):
  monkeypatch.setenv("COLUMNS", "40")
  out = TerminalIO()
  writer = MetricWriter(str(tmp_path), total_steps=100, stream=out)
  writer.tick(2, 2, {"d_loss": np.array([1.0, 0.75]), "g_loss": np.array([2.0, 1.5])})
  writer.close()
  line = out.getvalue().split("\r")[1].split("\x1b[K")[0]
  assert len(line) == 39 and line.startswith("[igan_jax] step 2/100")


def test_image_grid_is_written_as_png_and_returned(tmp_path):
  images = -np.ones((3, 4, 4, 1))
  path = str(tmp_path / "grid.png")
  grid = save_image_grid(images, path)
  np.testing.assert_array_equal(grid, image_grid(images))
  with Image.open(path) as im:
    np.testing.assert_array_equal(np.asarray(im), grid[..., 0])
  assert not os.path.exists(path + ".tmp")


@pytest.mark.slow  # one tiny training run (two steps): compiles the training step
def test_training_run_logs_every_metric_and_the_samples(tmp_path, capsys):
  import tensorflow_datasets as tfds
  from igan_jax import train
  workdir = tmp_path / "wd"
  config = tiny_config(num_iterations=2, log_every=1, sample_every=2, checkpoint_every=2)
  with tfds.testing.mock_data(num_examples=16):
    train.train_and_evaluate(config, str(workdir))
  assert "[igan_jax] step 2/2  d_loss=" in capsys.readouterr().err

  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  numeric = {k for row in rows for k, v in row.items()
             if k != "step" and isinstance(v, (int, float))}
  assert {"d_loss", "g_loss", "gp", "lr_d", "lr_g", "it_per_s", "rollbacks"} <= numeric
  events = read_tensorboard(workdir / "tensorboard")
  assert set(events.Tags()["scalars"]) == numeric
  assert [e.step for e in events.Scalars("d_loss")] == [row["step"] for row in rows
                                                       if "d_loss" in row] == [1, 2]
  (image,) = events.Images("samples")
  with Image.open(workdir / "samples" / "step_000002.png") as png:
    assert image.step == 2 and (image.width, image.height) == png.size
