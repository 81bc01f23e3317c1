"""Shared test setup: markers and a small, fast config for training tests."""
import os

# Keep XLA:CPU to the machine's cores and quiet; set before JAX starts.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One persistent XLA compilation cache per test session, shared with the CLI subprocesses the
# tests start (they inherit the environment): each distinct program compiles once per session.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import tempfile
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="igan_jax_xla_cache_")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"

import pytest  # noqa: E402


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: end-to-end or real-data tests (run in CI too)")


def tiny_config(name="fashion_mnist", resolution=28, **overrides):
  """The paper's config with small widths and batch: same code paths, seconds to compile/run."""
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


@pytest.fixture
def tiny():
  return tiny_config


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory):
  """A 4-iteration run of the real CLI on mock Fashion-MNIST, checkpoints at 2 and 4: shared by
  tests/test_main.py and tests/test_errors.py, which only read it (copy it to change it)."""
  from test_main import TINY, run_cli
  workdir = str(tmp_path_factory.mktemp("run") / "wd")
  r = run_cli(["--config=experiments/fashion_mnist.py", f"--workdir={workdir}",
               "--config.num_iterations=4"] + TINY, mock=True)
  assert r.returncode == 0, r.stderr[-3000:]
  return workdir, r
