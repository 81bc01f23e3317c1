"""The workdir: `check_workdir` (can it hold a run?) and one training process per workdir, an
advisory lock on <workdir>/.lock.

`fcntl.flock` locks belong to the open file: the kernel drops them when the process exits or is
killed (kill -9 included), so a stale lock never blocks a resume; the pid written inside only
makes the error message useful.
"""
from __future__ import annotations

import fcntl
import os
import tempfile

from igan_jax.errors import UserError


class WorkdirError(UserError, RuntimeError):
  """The workdir cannot be used; str(e) says what to do."""


def check_workdir(workdir: str) -> str:
  """The absolute workdir path, or WorkdirError with one line that names the problem and the fix.

  Writes nothing that stays and creates nothing: writability is probed by creating and removing
  what the run will create first — a file in the workdir if it exists, else a directory in its
  nearest existing ancestor. os.access is not enough: it reads permission bits, which let root
  write almost anywhere, and says yes where the filesystem still refuses — /sys and /proc (even
  to root), a full disk, root squashed to nobody on NFS.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if os.path.lexists(workdir) and not os.path.isdir(workdir):
    if os.path.islink(workdir) and not os.path.exists(workdir):
      raise WorkdirError(f"--workdir {workdir} is a link to the missing {os.readlink(workdir)}; "
                         "create its target or pass another directory")
    raise WorkdirError(f"--workdir {workdir} is a file, not a directory; pass a directory path")
  existing = workdir
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise WorkdirError(f"--workdir {workdir} cannot be created: {existing} is a file, not a "
                       "directory; pass a directory path")
  prefix = ".igan_jax_write_probe_"
  try:
    if existing == workdir:
      fd, probe = tempfile.mkstemp(prefix=prefix, dir=workdir)
      os.close(fd)
      os.unlink(probe)
    else:
      os.rmdir(tempfile.mkdtemp(prefix=prefix, dir=existing))
  except OSError as e:
    what = "a file" if existing == workdir else "a directory"
    raise WorkdirError(
        f"--workdir {workdir} is not writable ({e.strerror or type(e).__name__} creating {what} "
        f"in {existing}); pass a directory you can write to") from None
  return workdir


class WorkdirLocked(WorkdirError):
  """Another live process trains in this workdir."""


class WorkdirLock:

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, ".lock")
    self._f = None

  def acquire(self) -> "WorkdirLock":
    f = open(self.path, "a+")
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "another process"
      f.close()
      raise WorkdirLocked(
          f"workdir {os.path.dirname(self.path)} is in use by {holder}; wait for it to finish, "
          "or stop it, or pass another --workdir") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}")
    f.flush()
    self._f = f
    return self

  def release(self):
    if self._f is not None:
      fcntl.flock(self._f, fcntl.LOCK_UN)
      self._f.close()
      self._f = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
