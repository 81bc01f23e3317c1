"""Shared test setup: the XLA settings of the session, markers, and the shared fixtures (the
helpers themselves are in tests/helpers.py)."""
import os

# Keep XLA:CPU to the machine's cores and quiet; set before JAX starts.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One persistent XLA compilation cache per test session, shared with the CLI subprocesses the
# tests start (they inherit the environment): each distinct program compiles once per session.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import tempfile
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="igan_jax_xla_cache_")
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
# The tests check values, not speed, and compiling is most of their time: XLA:CPU's LLVM
# optimisation of the random-number code (init, dropout) and of the training step. Unoptimised
# (-O0), the tiny IGAN's init compiles in 3 s instead of 17 s and its training step in 15 s
# instead of 26 s (measured on 2 busy cores); the FID Inception network, the one large program
# the tests run, executes ~2.5x slower (+0.5 s an image). Results change by float rounding only:
# the same program on both sides of a comparison (a resume) stays bit-exact; two programs that
# compute the same thing may differ in the last bits (tests/test_train.py). XLA:CPU's older
# elemental emitters for fused loops (xla_cpu_use_fusion_emitters=false) compile the IGAN step
# in about half the time of the default MLIR fusion emitters and run it as fast. The CLI
# subprocesses inherit the flags; flags the user sets in XLA_FLAGS win.
_FAST_COMPILE = {"xla_backend_optimization_level": "0",
                 "xla_llvm_disable_expensive_passes": "true",
                 "xla_cpu_use_fusion_emitters": "false"}
_user_flags = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join([_user_flags] + [
    f"--{k}={v}" for k, v in _FAST_COMPILE.items() if f"--{k}" not in _user_flags]).strip()

import json  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

from helpers import TINY, run_cli, tiny_config  # noqa: E402
from igan_jax.data.core import file_lock  # noqa: E402


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: end-to-end or real-data tests (run in CI too)")


# `make test` hands whole files to the pytest-xdist workers (--dist loadfile) in collection
# order (--no-loadscope-reorder). The longest files go first, so that the last minutes are not
# one core finishing a long file while the other idles (longest first; from --durations on 2
# cores, the files over ~1 minute; the rest keep pytest's order).
LONGEST_FILES_FIRST = (
    "test_experiments.py", "test_parallel.py", "test_recipe_options.py", "test_errors.py",
    "test_models.py", "test_data.py", "test_training_eval.py", "test_train.py",
    "test_reproduce.py", "test_train_wiring.py", "test_model_family.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: within a file


@pytest.fixture
def tiny():
  return tiny_config


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory):
  """A 4-iteration run of the real CLI on mock Fashion-MNIST, checkpoints at 2 and 4: shared by
  tests/test_main.py, test_crash.py, test_errors.py and test_report.py, which only read it (copy
  it to change it). Under pytest-xdist the first worker that needs it trains it, under a file
  lock in the directory all workers share, and the others read it: one run per session."""
  shared = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):  # basetemp is per worker, its parent the session's
    shared = shared.parent
  workdir, done = shared / "trained_run" / "wd", shared / "trained_run" / "result.json"
  with file_lock(str(shared / "trained_run.lock")):
    if not done.exists():
      r = run_cli(["--config=experiments/fashion_mnist.py", f"--workdir={workdir}",
                   "--config.num_iterations=4"] + TINY, mock=True)
      assert r.returncode == 0, r.stderr[-3000:]
      done.write_text(json.dumps(dict(args=r.args, returncode=r.returncode, stdout=r.stdout,
                                      stderr=r.stderr)))
  result = subprocess.CompletedProcess(**json.loads(done.read_text()))
  return str(workdir), result
