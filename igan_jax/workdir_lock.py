"""One training process per workdir: an advisory lock on <workdir>/.lock.

`fcntl.flock` locks belong to the open file: the kernel drops them when the process exits or is
killed (kill -9 included), so a stale lock never blocks a resume; the pid written inside only
makes the error message useful.
"""
from __future__ import annotations

import fcntl
import os


class WorkdirLocked(RuntimeError):
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
