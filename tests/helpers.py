"""What several test modules share: the tiny config, the command line run as a subprocess (on
TFDS's mock data or real data), and comparisons of workdirs and states.

Test modules import from here (`from helpers import ...`; pytest puts tests/ on sys.path), never
from one another.
"""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The command line's small-model flags (tests/errors_table.py writes them as {tiny}): the same
# sizes as tiny_config below, logging, sampling and checkpointing every 2 iterations.
TINY = ["--config.batch_size=4", "--config.n_critic=2", "--config.model.channels=8",
        "--config.model.d_widths=(8,16)", "--config.num_samples=4", "--config.log_every=2",
        "--config.sample_every=2", "--config.checkpoint_every=2"]



def mock_main(num_examples=64):
  """A script that runs igan_jax.main with TFDS mocked: num_examples random images of the right
  shape per split, no files needed. Without torch, as a user's install runs (requirements.txt):
  torch is here for tests/test_inception.py only, and tensorboardX (the metric writer) imports
  it when it can, ~2 s of CPU per run."""
  return f"""
import sys
sys.modules["torch"] = None  # import torch raises ImportError
import tensorflow_datasets as tfds
from igan_jax import main
with tfds.testing.mock_data(num_examples={num_examples}):
  sys.argv = ["igan_jax.main"] + sys.argv[1:]
  main.run()
"""


MOCK_MAIN = mock_main()


def tiny_config(name="fashion_mnist", resolution=28, **overrides):
  """The paper's config with small widths and batch: same code paths, seconds to compile/run.
  overrides: dotted keys ("model.channels") and their values."""
  from igan_jax.config import base_config, validate
  c = base_config()
  c.data.name = name
  c.data.resolution = resolution
  c.batch_size = 4
  c.n_critic = 2
  c.model.channels = 8
  c.model.d_widths = (8, 16)
  c.num_samples = 4
  for key, value in overrides.items():
    target = c
    *path, last = key.split(".")
    for p in path:
      target = target[p]
    target[last] = value
  return validate(c)


def cli_env(data_dir=None, **extra):
  """The environment of a command-line subprocess: this one's (the session's XLA flags and
  compilation cache, tests/conftest.py) on CPU, TensorFlow quiet."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", **extra)
  if data_dir:
    env["TFDS_DATA_DIR"] = data_dir
  return env


def cli_command(args, mock=False):
  """`python -m igan_jax.main ARGS`, or the same on TFDS's mock data (mock: True for 64 images
  per split, or how many)."""
  if not mock:
    return [sys.executable, "-m", "igan_jax.main"] + list(args)
  return [sys.executable, "-c", mock_main(64 if mock is True else mock)] + list(args)


def run_cli(args, mock=False, data_dir=None, **env):
  """Runs the command line to its end (mock: as cli_command; env: more environment variables):
  the CompletedProcess (text stdout and stderr)."""
  return subprocess.run(cli_command(args, mock), cwd=ROOT, env=cli_env(data_dir, **env),
                        capture_output=True, text=True, timeout=900)


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


def assert_trees_equal(a, b):
  """Every array of two pytrees of the same structure equal, bit for bit."""
  import jax
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def assert_same_final_state(a_dir, b_dir):
  """The latest checkpoints of two CLI workdirs: the same step and the same arrays."""
  a, b = load_final_state(a_dir), load_final_state(b_dir)
  assert int(a.step) == int(b.step)
  assert_trees_equal(a, b)


def write_workdir(path, config, *states):
  """A workdir as training leaves it, without training: each state saved as the checkpoint of
  its step, and config.json. Returns path."""
  from igan_jax import checkpoint
  ckpt = checkpoint.Checkpointer(os.path.join(path, "checkpoints"))
  for state in states:
    ckpt.save(state)
  ckpt.wait()
  ckpt.close()
  checkpoint.save_config(path, config.to_dict())
  return path
