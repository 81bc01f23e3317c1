"""kill -9 at any moment, then the same command: the run finishes as if never interrupted.

A damaged newest checkpoint (set aside, kept; training resumes from the one before, bit-exactly)
is the `damaged_checkpoint` row of tests/errors_table.py, run by tests/test_errors.py.
"""
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from test_main import MOCK_MAIN, ROOT, TINY, load_final_state, run_cli

pytestmark = pytest.mark.slow


def _args(workdir, iters):
  return ["--config=experiments/fashion_mnist.py", f"--workdir={workdir}",
          f"--config.num_iterations={iters}"] + TINY


def _assert_same_state(a_dir, b_dir):
  a, b = load_final_state(a_dir), load_final_state(b_dir)
  assert int(a.step) == int(b.step)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """An uninterrupted run to 10 iterations, the reference."""
  out = {}
  for iters in (10,):
    wd = str(tmp_path_factory.mktemp("straight") / f"wd{iters}")
    r = run_cli(_args(wd, iters), mock=True)
    assert r.returncode == 0, r.stderr[-3000:]
    out[iters] = wd
  return out


def _kill_when(workdir, iters, predicate, timeout=600):
  """Starts a run, SIGKILLs it as soon as predicate(checkpoint dir entries) holds."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  p = subprocess.Popen([sys.executable, "-c", MOCK_MAIN] + _args(workdir, iters), cwd=ROOT,
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  ckpt = os.path.join(workdir, "checkpoints")
  deadline, seen = time.time() + timeout, None
  try:
    while time.time() < deadline:
      entries = os.listdir(ckpt) if os.path.isdir(ckpt) else []
      if predicate(entries):
        seen = list(entries)
        break
      if p.poll() is not None:
        break
      time.sleep(0.005)
  finally:
    p.send_signal(signal.SIGKILL)
    p.wait()
  return seen


def test_kill_during_a_step_then_resume(straight, tmp_path):
  wd = str(tmp_path / "wd")
  # Checkpoint 4 complete: the process is inside iterations 5-6 (or saving 6).
  seen = _kill_when(wd, 10, lambda e: "4" in e)
  assert seen is not None, "the run ended before checkpoint 4"
  r = run_cli(_args(wd, 10), mock=True)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "resumed" in r.stdout
  _assert_same_state(wd, straight[10])


def test_kill_during_an_async_checkpoint_write_then_resume(straight, tmp_path):
  wd = str(tmp_path / "wd")
  # Orbax writes into "<step>.orbax-checkpoint-tmp-*" and renames when complete: kill while a
  # temporary directory exists (if the write is too quick to catch, this kills just after).
  seen = _kill_when(wd, 10, lambda e: any("tmp" in x for x in e) or "6" in e)
  assert seen is not None
  r = run_cli(_args(wd, 10), mock=True)
  assert r.returncode == 0, r.stderr[-3000:]
  entries = os.listdir(os.path.join(wd, "checkpoints"))
  assert not any("tmp" in x for x in entries), entries  # incomplete ones cleaned up
  _assert_same_state(wd, straight[10])
