"""The command line end to end on tfds.testing.mock_data, resume through the CLI, and bad input."""
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


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
  """A 4-iteration run of the real CLI on mock Fashion-MNIST."""
  workdir = str(tmp_path_factory.mktemp("run") / "wd")
  r = run_cli(["--config=experiments/fashion_mnist.py", f"--workdir={workdir}",
               "--config.num_iterations=4"] + TINY, mock=True)
  assert r.returncode == 0, r.stderr[-3000:]
  return workdir, r


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
def test_cli_resume_is_bit_exact(tmp_path):
  import jax
  resumed = str(tmp_path / "resumed")
  straight = str(tmp_path / "straight")
  # k = 2 then the same command again to 4, against 4 straight.
  outputs = []
  for wd, iters in [(resumed, 2), (resumed, 4), (straight, 4)]:
    r = run_cli(["--config=experiments/fashion_mnist.py", f"--workdir={wd}",
                 f"--config.num_iterations={iters}"] + TINY, mock=True)
    assert r.returncode == 0, r.stderr[-3000:]
    outputs.append(r.stdout)
  assert "from step 2" in outputs[1] and "resumed" not in outputs[2]
  a, b = load_final_state(resumed), load_final_state(straight)
  assert int(a.step) == int(b.step) == 4
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


BAD_INPUTS = [
    (["--config.no_such_key=1"], "no_such_key"),
    (["--config.batch_size=-1"], "batch_size"),
    (["--config.data.name=cifar10"], "supported"),
    (["--config.data.resolution=64"], "resolution"),
    (["--config.model.name=stylegan"], "model.name"),
    (["--config.optim.d_init_lr=0"], "d_init_lr"),
    (["--config.n_critic=0"], "n_critic"),
    (["--config.batch_size=abc"], "batch_size"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args,needle", BAD_INPUTS)
def test_bad_config_is_one_line_and_leaves_checkpoints(trained_workdir, args, needle):
  workdir, _ = trained_workdir
  before = snapshot(workdir)
  r = run_cli(["--config=experiments/fashion_mnist.py", f"--workdir={workdir}"] + args)
  assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, r.stderr
  assert lines[0].startswith("igan_jax: error:") and needle in lines[0], lines[0]
  assert snapshot(workdir) == before


def test_workdir_that_is_a_file(tmp_path):
  f = tmp_path / "afile"
  f.write_text("x")
  r = run_cli(["--config=experiments/fashion_mnist.py", f"--workdir={f}"], mock=True)
  assert r.returncode == 2, r.stderr[-2000:]
  assert "is a file" in r.stderr.strip().splitlines()[-1]
  assert f.read_text() == "x"


def test_missing_config_file():
  r = run_cli(["--config=experiments/nope.py", "--workdir=/tmp/unused-igan"])
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and "nope.py" in lines[0], r.stderr


@pytest.mark.slow
def test_other_model_setup_is_refused(trained_workdir):
  workdir, _ = trained_workdir
  before = snapshot(workdir)
  r = run_cli(["--config=experiments/fashion_mnist.py", f"--workdir={workdir}",
               "--config.num_iterations=6"] + TINY + ["--config.model.channels=16"], mock=True)
  assert r.returncode == 2, r.stderr[-2000:]
  last = r.stderr.strip().splitlines()[-1]
  assert "model.channels" in last and "--workdir" in last, last
  assert snapshot(workdir) == before


def test_mnist_offline_names_the_files(tmp_path):
  r = run_cli(["--config=experiments/mnist.py", f"--workdir={tmp_path / 'wd'}"],
              data_dir=str(tmp_path / "tfds"))
  if r.returncode == 0:
    pytest.skip("this machine can download MNIST")
  assert r.returncode == 2, r.stderr[-2000:]
  msg = r.stderr.strip().splitlines()[-1]
  assert "Traceback" not in r.stderr
  for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    assert name in msg
  assert str(tmp_path / "tfds") in msg
  assert not os.path.exists(tmp_path / "wd")
