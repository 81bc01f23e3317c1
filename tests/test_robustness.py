"""A run is never lost: the workdir lock, divergence rollback, the collapse diagnostic."""
import json
import os
import subprocess
import sys
import time

import pytest

from igan_jax import train
from igan_jax.workdir_lock import WorkdirLock, WorkdirLocked
from test_main import MOCK_MAIN, ROOT, TINY, run_cli, snapshot


def test_lock_excludes_a_second_holder(tmp_path):
  with WorkdirLock(str(tmp_path)):
    with pytest.raises(WorkdirLocked, match=f"pid {os.getpid()}"):
      WorkdirLock(str(tmp_path)).acquire()
  WorkdirLock(str(tmp_path)).acquire().release()  # free again once released


def test_stale_lock_of_a_killed_process_does_not_block(tmp_path):
  code = ("import sys, time; from igan_jax.workdir_lock import WorkdirLock; "
          f"lock = WorkdirLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(60)")
  p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert p.stdout.readline().strip() == "locked"
    with pytest.raises(WorkdirLocked):
      WorkdirLock(str(tmp_path)).acquire()
  finally:
    p.kill()  # SIGKILL: no cleanup runs in the child
    p.wait()
  assert os.path.exists(tmp_path / ".lock")  # the file stays behind ...
  WorkdirLock(str(tmp_path)).acquire().release()  # ... and does not block


def test_collapse_monitor():
  m = train.CollapseMonitor(threshold=0.01, patience=2)
  assert m.update(0, 0.5) is None
  assert m.update(30, 0.001) is None       # one low window: not yet
  assert m.update(60, 0.002) == 30         # confirmed; began at the first low window
  assert m.update(90, 0.3) is None         # recovered: reset
  assert m.update(120, 0.0) is None


@pytest.mark.slow
def test_absurd_learning_rate_rolls_back_then_stops(tmp_path):
  workdir = tmp_path / "wd"
  r = run_cli(["--config=experiments/fashion_mnist.py", f"--workdir={workdir}",
               "--config.num_iterations=40", "--config.optim.d_init_lr=1e8",
               "--config.optim.d_end_lr=1e8", "--config.max_rollbacks=2"] + TINY, mock=True)
  assert r.returncode == 3, r.stderr[-3000:]
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith("igan_jax: stopped: non-finite") and "step" in last, last
  assert "last good" in last
  assert r.stdout.count("rolled back") == 2, r.stdout
  rows = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
  assert [row["rollback"] for row in rows if "rollback" in row] == [1, 2]
  # No checkpoint holds a non-finite state: every saved one restores to finite parameters.
  import jax
  import numpy as np
  from test_main import load_final_state
  if os.path.isdir(workdir / "checkpoints") and any(
      s.isdigit() for s in os.listdir(workdir / "checkpoints")):
    state = load_final_state(str(workdir))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(state))


@pytest.mark.slow
def test_second_process_on_the_same_workdir_stops_at_once(tmp_path):
  workdir = tmp_path / "wd"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  args = ["--config=experiments/fashion_mnist.py", f"--workdir={workdir}",
          "--config.num_iterations=400"] + TINY
  first = subprocess.Popen([sys.executable, "-c", MOCK_MAIN] + args, cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 600
    while not (workdir / "metrics.jsonl").exists() or not os.path.getsize(workdir / "metrics.jsonl"):
      assert first.poll() is None, first.stderr.read()[-3000:]
      assert time.time() < deadline
      time.sleep(1)
    t = time.time()
    r = run_cli(args, mock=True)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "in use by pid" in r.stderr.strip().splitlines()[-1]
    assert first.poll() is None  # the first run is unharmed
  finally:
    first.kill()
    first.wait()
