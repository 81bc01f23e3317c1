"""A run is never lost: the workdir check and lock, the collapse diagnostic.

Through the command line (a second run on a busy workdir, divergence with rollbacks, an
unwritable workdir, ...): tests/errors_table.py, run by tests/test_errors.py.
"""
import contextlib
import os
import re
import shutil
import subprocess
import sys

import pytest

from igan_jax import train
from igan_jax.workdir_lock import WorkdirError, WorkdirLock, WorkdirLocked, check_workdir
from helpers import ROOT


def test_lock_excludes_a_second_holder(tmp_path):
  with WorkdirLock(str(tmp_path)):
    with pytest.raises(WorkdirLocked, match=f"pid {os.getpid()}"):
      WorkdirLock(str(tmp_path)).acquire()
  WorkdirLock(str(tmp_path)).acquire().release()  # free again once released


def test_stale_lock_of_a_killed_process_does_not_block(tmp_path):
  code = ("import sys, time; from igan_jax.workdir_lock import WorkdirLock; "
          f"lock = WorkdirLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); "
          "time.sleep(60)")
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


# ---------------------------------------------------------------------------------------------
# check_workdir: writability is probed, not read off the permission bits (os.access lets root
# write almost anywhere, and says yes where the filesystem still refuses: /sys, a full disk).


def test_check_workdir_gives_the_absolute_path_and_leaves_nothing(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert check_workdir("runs/a") == str(tmp_path / "runs" / "a")
  assert os.listdir(tmp_path) == []  # the probe directory is gone, nothing was created
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "config.json").write_text("{}")
  assert check_workdir(str(tmp_path / "old")) == str(tmp_path / "old")
  assert os.listdir(tmp_path / "old") == ["config.json"]


def test_check_workdir_refuses_files_and_dangling_links(tmp_path):
  (tmp_path / "f").write_text("x")
  with pytest.raises(WorkdirError, match="is a file, not a directory"):
    check_workdir(str(tmp_path / "f"))
  with pytest.raises(WorkdirError, match=f"cannot be created: {tmp_path / 'f'} is a file"):
    check_workdir(str(tmp_path / "f" / "run"))
  os.symlink(tmp_path / "gone", tmp_path / "link")
  with pytest.raises(WorkdirError, match="is a link to the missing"):
    check_workdir(str(tmp_path / "link"))
  assert (tmp_path / "f").read_text() == "x"


def _run_as_root():
  return os.geteuid() == 0


@contextlib.contextmanager
def _immutable_dir(tmp_path):
  """A directory with the immutable attribute: not even root may create in it."""
  d = tmp_path / "immutable"
  d.mkdir()
  if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(d)],
                                                  capture_output=True).returncode:
    pytest.skip("chattr +i is not available here (needs root and ext4/xfs/btrfs)")
  try:
    yield str(d)
  finally:
    subprocess.run(["chattr", "-i", str(d)], check=True)


@contextlib.contextmanager
def _read_only_mode_dir(tmp_path):
  d = tmp_path / "r-x"
  d.mkdir()
  d.chmod(0o555)
  try:
    yield str(d)
  finally:
    d.chmod(0o755)


@contextlib.contextmanager
def _sysfs(tmp_path):
  if not os.path.isdir("/sys/kernel"):
    pytest.skip("no /sys here")
  yield "/sys/kernel"


UNWRITABLE = {"sysfs": _sysfs, "immutable": _immutable_dir, "mode_555": _read_only_mode_dir}


@pytest.mark.parametrize("place", ["existing", "to_create"])
@pytest.mark.parametrize("kind", sorted(UNWRITABLE))
def test_check_workdir_probes_writability(kind, place, tmp_path):
  with UNWRITABLE[kind](tmp_path) as d:
    workdir = d if place == "existing" else os.path.join(d, "run", "wd")
    if kind == "mode_555" and _run_as_root():
      # Root may write where the mode says no: the probe must not refuse it.
      assert check_workdir(workdir) == workdir
      return
    with pytest.raises(WorkdirError, match=rf"--workdir {re.escape(workdir)} is not writable "
                       rf"\(.* in {re.escape(d)}\); pass a directory you can write to"):
      check_workdir(workdir)
    assert not os.path.exists(os.path.join(d, "run"))


# In a private mount namespace: a tmpfs with no inode left, so nothing can be created in it
# (a full disk). Its mode is 1777, so os.access says writable to everyone, root or not.
_FULL_DISK = """
set -e
mount -t tmpfs -o size=64k,nr_inodes=2 tmpfs "$1"
touch "$1/taken"
exec "$2" -c '
import os, sys
from igan_jax.workdir_lock import WorkdirError, check_workdir
d = sys.argv[1]
assert os.access(d, os.W_OK)  # the permission bits say yes
for workdir in (d, os.path.join(d, "wd")):
  try:
    check_workdir(workdir)
  except WorkdirError as e:
    print(e)
  else:
    print("accepted", workdir)
' "$1"
"""


def test_check_workdir_on_a_full_disk(tmp_path):
  if not shutil.which("unshare") or subprocess.run(
      ["unshare", "-m", "true"], capture_output=True).returncode:
    pytest.skip("unshare -m (a private mount namespace) is not permitted here")
  mnt = tmp_path / "mnt"
  mnt.mkdir()
  r = subprocess.run(["unshare", "-m", "sh", "-c", _FULL_DISK, "sh", str(mnt), sys.executable],
                     cwd=ROOT, capture_output=True, text=True, timeout=120,
                     env=dict(os.environ, PYTHONPATH=ROOT))
  if r.returncode and "mount" in r.stderr and "Traceback" not in r.stderr:
    pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
  assert r.returncode == 0, r.stderr
  lines = r.stdout.strip().splitlines()
  assert lines == [
      f"--workdir {mnt} is not writable (No space left on device creating a file in {mnt}); "
      "pass a directory you can write to",
      f"--workdir {mnt}/wd is not writable (No space left on device creating a directory in "
      f"{mnt}); pass a directory you can write to"], lines
