"""Every row of tests/errors_table.py through the real command line, and docs/errors.md up to date.

Each case is prepared by its SETUPS entry (a workdir of the right kind, a first run holding the
lock, ...), runs `python -m igan_jax.main` once, and checks the exit status, the one answering
line, and what happened to the workdir. With $IGAN_ERRORS_RECORD set (python -m
tests.errors_table does) each observed line is appended there for docs/errors.md.
"""
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Callable

import pytest

import errors_table
from errors_table import CASES
from helpers import MOCK_MAIN, ROOT, TINY, load_final_state, run_cli, snapshot


@dataclasses.dataclass
class Prepared:
  workdir: str
  check: Callable = lambda result: None  # what must hold of the workdir afterwards
  data_dir: str | None = None


@contextlib.contextmanager
def _unchanged(workdir):
  before = snapshot(workdir)

  def check(_):
    assert snapshot(workdir) == before, "the workdir changed"
  yield Prepared(workdir, check)


@contextlib.contextmanager
def existing(tmp_path, request):
  """The files of an existing run: the bad input must leave every one of them alone."""
  from igan_jax.config import base_config
  wd = tmp_path / "wd"
  (wd / "checkpoints" / "2").mkdir(parents=True)
  (wd / "checkpoints" / "2" / "_CHECKPOINT_METADATA").write_text("{}")
  (wd / "samples").mkdir()
  (wd / "samples" / "step_000002.png").write_bytes(b"\x89PNG")
  (wd / "config.json").write_text(base_config().to_json())
  (wd / "metrics.jsonl").write_text('{"step": 2, "d_loss": 0.5}\n')
  with _unchanged(str(wd)) as p:
    yield p


@contextlib.contextmanager
def trained(tmp_path, request):
  """The shared 4-iteration run (tests/conftest.py), read only."""
  workdir, _ = request.getfixturevalue("trained_workdir")
  with _unchanged(workdir) as p:
    yield p


def _not_created(workdir):
  def check(_):
    assert not os.path.lexists(workdir), "the workdir was created"
  return check


@contextlib.contextmanager
def fresh(tmp_path, request):
  wd = str(tmp_path / "wd")
  yield Prepared(wd, _not_created(wd))


@contextlib.contextmanager
def broken_config(tmp_path, request):
  (tmp_path / "broken.py").write_text("def get_config():\n  return dict(\n")
  with fresh(tmp_path, request) as p:
    yield p


@contextlib.contextmanager
def offline(tmp_path, request):
  """An empty TFDS data dir: MNIST is neither prepared nor in the manual dir."""
  with fresh(tmp_path, request) as p:
    p.data_dir = str(tmp_path / "tfds")
    yield p


@contextlib.contextmanager
def file(tmp_path, request):
  f = tmp_path / "afile"
  f.write_text("x")

  def check(_):
    assert f.read_text() == "x"
  yield Prepared(str(f), check)


@contextlib.contextmanager
def unwritable(tmp_path, request):
  """Under /sys, which even root cannot write (tests/test_robustness.py probes more places)."""
  if not os.path.isdir("/sys/kernel"):
    pytest.skip("no /sys here")
  wd = "/sys/igan_jax_wd"
  yield Prepared(wd, _not_created(wd))


@contextlib.contextmanager
def damaged(tmp_path, request):
  """A copy of the shared run with every data file of its newest checkpoint (4) truncated."""
  ref, _ = request.getfixturevalue("trained_workdir")
  wd = str(tmp_path / "wd")
  shutil.copytree(ref, wd)
  n = 0
  for root, _, files in os.walk(os.path.join(wd, "checkpoints", "4")):
    for f in files:
      path = os.path.join(root, f)
      if os.path.getsize(path) > 16 and not f.endswith(".json"):
        with open(path, "r+b") as fh:
          fh.truncate(os.path.getsize(path) // 3)
        n += 1
  assert n, "nothing to damage in checkpoint 4"

  def check(r):
    import jax
    import numpy as np
    assert "from step 2" in r.stdout, r.stdout
    assert os.path.isdir(os.path.join(wd, "checkpoints_damaged", "4"))  # kept, not deleted
    a, b = load_final_state(wd), load_final_state(ref)
    assert int(a.step) == int(b.step) == 4
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  yield Prepared(wd, check)


@contextlib.contextmanager
def locked(tmp_path, request):
  """A first run of the same command, training (its first metrics written) when the case runs."""
  wd = tmp_path / "wd"
  case_args = _expand(request.node.callspec.params["case"].args, str(wd), str(tmp_path))
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  first = subprocess.Popen([sys.executable, "-c", MOCK_MAIN] + case_args, cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 600
    while not (wd / "metrics.jsonl").exists() or not os.path.getsize(wd / "metrics.jsonl"):
      assert first.poll() is None, first.stderr.read()[-3000:]
      assert time.time() < deadline, "the first run wrote no metrics in 10 minutes"
      time.sleep(0.5)

    def check(_):
      assert first.poll() is None, "the first run stopped"  # unharmed, still training
    yield Prepared(str(wd), check)
  finally:
    first.kill()
    first.wait()


@contextlib.contextmanager
def diverging(tmp_path, request):
  """A copy of the shared run (checkpoints 2 and 4), resumed with lr 1e8 by the case."""
  ref, _ = request.getfixturevalue("trained_workdir")
  wd = tmp_path / "wd"
  shutil.copytree(ref, wd)

  def check(r):
    import jax
    import numpy as np
    assert r.stdout.count("rolled back to checkpoint 4") == 2, r.stdout
    rows = [json.loads(l) for l in open(wd / "metrics.jsonl")]
    assert [(row["rollback"], row["rolled_back_to"]) for row in rows if "rollback" in row] == [
        (1, 4), (2, 4)]
    # Nothing non-finite was saved: the checkpoints are still the good run's, bit for bit.
    assert sorted(s for s in os.listdir(wd / "checkpoints") if s.isdigit()) == ["2", "4"]
    a, b = load_final_state(str(wd)), load_final_state(ref)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
      assert np.all(np.isfinite(np.asarray(x)))
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  yield Prepared(str(wd), check)


SETUPS = {f.__name__: f for f in (existing, trained, fresh, broken_config, offline, file,
                                  unwritable, damaged, locked, diverging)}


def _expand(args, workdir, tmp):
  out = []
  for a in args:
    out += TINY if a == "{tiny}" else [a.format(workdir=workdir, tmp=tmp)]
  return out


def _answer(case, r):
  """The line that answers: stderr's last, or for a run that goes on, the stdout line."""
  if case.stream == "stdout":
    first = errors_table.expected(case)[0]
    hits = [l for l in r.stdout.splitlines() if first in l]
    assert hits, r.stdout
    return hits[0]
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert lines, "nothing on stderr"
  prefix = "igan_jax: stopped:" if case.exit == 3 else "igan_jax: error:"
  assert lines[-1].startswith(prefix), r.stderr[-3000:]
  # One line: no traceback, and no other line of ours before it.
  assert "Traceback" not in r.stderr, r.stderr[-3000:]
  assert sum(l.startswith("igan_jax: ") for l in lines) == 1, r.stderr[-3000:]
  return lines[-1]


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in CASES])
def test_case(case, tmp_path, request):
  with SETUPS[case.setup](tmp_path, request) as prep:
    r = run_cli(_expand(case.args, prep.workdir, str(tmp_path)), mock=case.mock,
                data_dir=prep.data_dir)
    if case.id == "mnist_offline" and r.returncode == 0:
      pytest.skip("this machine can download MNIST")
    assert r.returncode == case.exit, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    line = _answer(case, r)
    for needle in errors_table.expected(case, prep.workdir, str(tmp_path)):
      assert needle in line, (needle, line)
    prep.check(r)
  record = os.environ.get("IGAN_ERRORS_RECORD")
  if record:
    with open(record, "a", encoding="utf-8") as f:
      f.write(json.dumps({"id": case.id, "message": errors_table.normalize(
          line.strip(), prep.workdir, str(tmp_path))}, ensure_ascii=False) + "\n")


def test_every_case_has_a_setup():
  assert {c.setup for c in CASES} <= set(SETUPS)
  assert all(c.stream in ("stderr", "stdout") for c in CASES)


def test_docs_errors_md_is_up_to_date():
  text = open(errors_table.DOC, encoding="utf-8").read() if os.path.exists(
      errors_table.DOC) else ""
  assert text == errors_table.render(errors_table.read_observed()), (
      "docs/errors.md is out of date with tests/errors_table.py: run "
      "python -m tests.errors_table to regenerate")
