"""The command line end to end on tfds.testing.mock_data and resume through the CLI; the helpers
the other command-line tests share. Bad input: tests/errors_table.py, run by tests/test_errors.py."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config.batch_size=4", "--config.n_critic=2", "--config.model.channels=8",
        "--config.model.d_widths=(8,16)", "--config.num_samples=4", "--config.log_every=2",
        "--config.sample_every=2", "--config.checkpoint_every=2"]

# Runs igan_jax.main with TFDS mocked: random images of the right shape, no files needed.
MOCK_MAIN = """
import sys
import tensorflow_datasets as tfds
from igan_jax import main
with tfds.testing.mock_data(num_examples=64):
  sys.argv = ["igan_jax.main"] + sys.argv[1:]
  main.run()
"""


def run_cli(args, mock=False, data_dir=None):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  if data_dir:
    env["TFDS_DATA_DIR"] = data_dir
  cmd = [sys.executable] + (["-c", MOCK_MAIN] if mock else ["-m", "igan_jax.main"]) + args
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def snapshot(directory):
  """{relative path: (size, mtime_ns)} of every file under directory."""
  out = {}
  for root, _, files in os.walk(directory):
    for f in files:
      p = os.path.join(root, f)
      st = os.stat(p)
      out[os.path.relpath(p, directory)] = (st.st_size, st.st_mtime_ns)
  return out


def load_final_state(workdir):
  """The latest checkpoint of a CLI run, restored into a state built from its config.json."""
  import ml_collections
  from igan_jax import checkpoint, train
  with open(os.path.join(workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  state = ckpt.restore(train.create_train_state(config))
  ckpt.close()
  return state


@pytest.mark.slow
def test_end_to_end_on_mock_data(trained_workdir):
  workdir, r = trained_workdir
  assert "step 4/4" in r.stderr
  assert sorted(os.listdir(os.path.join(workdir, "samples"))) == [
      "step_000002.png", "step_000004.png"]
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [row["step"] for row in rows] == [2, 4]
  for key in ("d_loss", "g_loss", "gp", "lr_d", "lr_g", "it_per_s"):
    assert all(np.isfinite(row[key]) for row in rows), key
  np.testing.assert_allclose(rows[0]["lr_g"], 1.5 * rows[0]["lr_d"], rtol=1e-6)
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  cfg = json.load(open(os.path.join(workdir, "config.json")))
  assert cfg["num_iterations"] == 4 and cfg["model"]["name"] == "igan"
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  assert steps == [2, 4]


@pytest.mark.slow
def test_cli_resume_is_bit_exact(trained_workdir, tmp_path):
  import jax
  resumed = str(tmp_path / "resumed")
  straight, first = trained_workdir  # the same command, 4 iterations straight
  # k = 2 then the same command again to 4, against 4 straight.
  outputs = []
  for iters in (2, 4):
    r = run_cli(["--config=experiments/fashion_mnist.py", f"--workdir={resumed}",
                 f"--config.num_iterations={iters}"] + TINY, mock=True)
    assert r.returncode == 0, r.stderr[-3000:]
    outputs.append(r.stdout)
  assert "from step 2" in outputs[1] and "resumed" not in first.stdout
  a, b = load_final_state(resumed), load_final_state(straight)
  assert int(a.step) == int(b.step) == 4
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
