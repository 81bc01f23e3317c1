"""kill -9 at any moment, then the same command: the run finishes as if never interrupted.

One workdir is killed twice, then run to its end: first inside a training step, then (resumed)
while orbax writes a checkpoint; the end state equals the shared uninterrupted run's
(tests/conftest.py: the same command, 4 iterations, checkpoints at 2 and 4), bit for bit.

A damaged newest checkpoint (set aside, kept; training resumes from the one before, bit-exactly)
is the `damaged_checkpoint` row of tests/errors_table.py, run by tests/test_errors.py.
"""
import os
import signal
import subprocess
import time

import pytest

from helpers import ROOT, TINY, assert_same_final_state, cli_command, cli_env, run_cli

pytestmark = pytest.mark.slow


def _args(workdir):
  return ["--config=experiments/fashion_mnist.py", f"--workdir={workdir}",
          "--config.num_iterations=4"] + TINY


def _kill_when(workdir, predicate, stdout_path, timeout=600):
  """Starts the run, SIGKILLs it as soon as predicate(checkpoint dir entries) holds: the
  entries it saw then (None: the run ended first). Its stdout goes to stdout_path."""
  ckpt = os.path.join(workdir, "checkpoints")
  with open(stdout_path, "w") as out:
    p = subprocess.Popen(cli_command(_args(workdir), mock=True), cwd=ROOT, env=cli_env(),
                         stdout=out, stderr=subprocess.DEVNULL)
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


def test_killed_twice_then_the_same_command_ends_as_if_never_interrupted(trained_workdir,
                                                                         tmp_path):
  straight, _ = trained_workdir
  wd = str(tmp_path / "wd")
  ckpt = os.path.join(wd, "checkpoints")
  # Killed during a step: checkpoint 2 complete, the process is inside iterations 3-4 (or
  # saving 4).
  seen = _kill_when(wd, lambda e: "2" in e, tmp_path / "first.out")
  assert seen is not None, "the run ended before checkpoint 2"
  assert "resumed" not in (tmp_path / "first.out").read_text()
  # The same command resumes from 2, and is killed while a checkpoint is being written: orbax
  # writes into "<step>.orbax-checkpoint-tmp-*" and renames when complete. Kill when a new
  # temporary directory exists (if the write is too quick to catch, just after 4 is complete).
  before = set(os.listdir(ckpt))
  seen = _kill_when(wd, lambda e: any("tmp" in x and x not in before for x in e) or "4" in e,
                    tmp_path / "second.out")
  assert seen is not None, "the resumed run ended before checkpoint 4"
  assert "resumed" in (tmp_path / "second.out").read_text()
  # And once more, to its end.
  r = run_cli(_args(wd), mock=True)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "resumed" in r.stdout
  entries = os.listdir(ckpt)
  assert not any("tmp" in x for x in entries), entries  # incomplete ones cleaned up
  assert sorted(x for x in entries if x.isdigit()) == ["2", "4"]
  assert_same_final_state(wd, straight)
