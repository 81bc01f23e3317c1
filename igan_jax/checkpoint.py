"""Checkpoints of a GANState with orbax: async and atomic saves, keep the last N, restore latest.

Orbax writes each step into a temporary directory and renames it when complete, so a killed run
leaves either a whole checkpoint or an ignorable temporary one. What is saved is the state's
arrays (`state.to_checkpoint`); the static parts come back from the config. The run's config is
kept beside the checkpoints as config.json, and a checkpoint from a run with a different model or
data shape is refused with a message that says what differs.

`BestCheckpointer` keeps, in `<workdir>/checkpoints/best/`, the one state with the lowest value of
a metric so far (FID during training), for `--mode=evaluate --checkpoint=best`.

`restore_read_only(config, workdir, step)` is the one way to read a run's checkpoint without
training it (`--mode=evaluate`, the run report): a step, the latest, or the best, through a
read-only orbax manager that writes nothing, so a run can be evaluated while it trains.

Checkpoints do not depend on the device count: the state is replicated over the run's `data`
mesh (igan_jax/parallel.py), orbax writes one copy of each array, and a restore places the
arrays in the shardings of the target state, built for the restoring run's mesh, so a run saved
on N devices resumes on M. With several processes every process calls save and restore (orbax
coordinates them); only process 0 moves a damaged checkpoint aside.
"""
from __future__ import annotations

import datetime
import json
import math
import numbers
import os
import shutil
import time

import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging

from igan_jax import parallel
from igan_jax.errors import UserError
from igan_jax.state import GANState, create_train_state, from_checkpoint, to_checkpoint
from igan_jax.workdir_lock import WorkdirError

# Config keys that change the state's shapes or meaning: resuming across them is refused.
IDENTITY_KEYS = ("model.name", "data.name", "data.resolution", "model.channels", "model.z_dim",
                 "model.d_widths", "model.d_norm", "n_critic", "batch_size")


class CheckpointError(UserError, RuntimeError):
  """A checkpoint directory cannot be used; str(e) says why and what to do."""


def _lookup(cfg: dict, dotted: str):
  for part in dotted.split("."):
    if not isinstance(cfg, dict) or part not in cfg:
      return None
    cfg = cfg[part]
  return list(cfg) if isinstance(cfg, (list, tuple)) else cfg


def check_compatible(saved_config: dict, config: dict, workdir: str):
  """Raises CheckpointError naming each identity key that differs between the two configs."""
  diffs = [f"{k}: {_lookup(saved_config, k)!r} in the workdir vs {_lookup(config, k)!r} now"
           for k in IDENTITY_KEYS if _lookup(saved_config, k) != _lookup(config, k)]
  if diffs:
    raise CheckpointError(
        f"workdir {workdir} holds a run with a different setup ({'; '.join(diffs)}); "
        "use a new --workdir, or the workdir's own config.json")


def _restore_arrays(manager: ocp.CheckpointManager, step: int, target: GANState, where: str,
                    item: str | None = None, hint: str = "") -> GANState:
  """Checkpoint `step` of `manager` in target's structure; `item`: the item of a composite
  checkpoint (BestCheckpointer's "state"). CheckpointError names `where` (+ `hint`)."""
  # Shape, dtype and sharding of each target array: orbax reads the arrays straight into the
  # target's mesh, whatever the mesh that saved them.
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, to_checkpoint(target))
  args = ocp.args.StandardRestore(abstract)
  try:
    if item is None:
      restored = manager.restore(step, args=args)
    else:
      restored = getattr(manager.restore(step, args=ocp.args.Composite(**{item: args})), item)
  except Exception as e:  # orbax raises many types for a damaged or foreign checkpoint
    raise CheckpointError(
        f"{where} cannot be read ({type(e).__name__}: "
        f"{str(e).splitlines()[0][:200] if str(e) else ''}){hint}") from e
  return from_checkpoint(target, restored)


class Checkpointer:
  """Owns `<workdir>/checkpoints`."""

  def __init__(self, directory: str, max_to_keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             enable_async_checkpointing=async_save,
                                             cleanup_tmp_directories=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, state: GANState, force: bool = False) -> bool:
    step = int(jax.device_get(state.step))
    if step in self._manager.all_steps():
      return False
    return self._manager.save(step, args=ocp.args.StandardSave(to_checkpoint(state)), force=force)

  def restore(self, target: GANState, step: int | None = None) -> GANState:
    """Restores `step` (default: latest complete) into target's structure."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    return _restore_arrays(self._manager, step, target,
                           f"checkpoint {step} in {self.directory}")

  def restore_latest_good(self, target: GANState) -> tuple[GANState, list[tuple[int, str]]]:
    """Restores the newest checkpoint that reads; returns (state, [(step, why) skipped]).

    A newer checkpoint that cannot be read while an older one can is damaged (truncated, disk
    full, edited): it is moved aside to `<checkpoints>_damaged/<step>` — kept, never deleted —
    so that training can write that step again. If no checkpoint reads, nothing is moved and
    CheckpointError says why (typically a checkpoint of another setup).
    """
    skipped = []
    for step in sorted(self.all_steps(), reverse=True):
      try:
        state = self.restore(target, step)
      except CheckpointError as e:
        skipped.append((step, str(e)))
        continue
      for bad, _ in skipped:
        self._move_aside(bad)
      return state, skipped
    raise CheckpointError(skipped[0][1] + "; no older checkpoint reads either: use a new "
                          "--workdir, or the config this workdir was trained with")

  def _move_aside(self, step: int):
    if parallel.is_primary():  # one process moves it; every process then reloads
      src = os.path.join(self.directory, str(step))
      dst_dir = self.directory + "_damaged"
      os.makedirs(dst_dir, exist_ok=True)
      dst = os.path.join(dst_dir, str(step))
      if os.path.exists(dst):
        dst = f"{dst}.{int(time.time())}"
      shutil.move(src, dst)
    parallel.sync(f"igan_jax checkpoint {step} moved aside")
    self._manager.reload()

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()


BEST_DIR = "best"  # <workdir>/checkpoints/best/: not a number, so never a step of Checkpointer


def best_directory(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints", BEST_DIR)


def read_only_manager(directory: str) -> ocp.CheckpointManager:
  """An orbax manager that reads `directory` and writes nothing (no directory created, no
  temporary directory cleaned up: a save in flight of a run still training is left alone).

  Opening read-only, orbax logs a warning that the directory is read-only: that is the point, and
  the line would break the command line's one-line error contract, so the constructor is quiet."""
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    return ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
        read_only=True, create=False, save_interval_steps=0))
  finally:
    absl_logging.set_verbosity(verbosity)


class BestCheckpointer:
  """The best state so far by one metric (lower is better) in `<workdir>/checkpoints/best/`.

  Layout: `best/` is an orbax CheckpointManager of its own holding one step directory,
  `best/<step>/`, with two items written together and committed by orbax's one atomic rename:
  "state" (the arrays, as Checkpointer saves them) and "best" (JSON: step, value, metric,
  protocol, time). `best/best.json` is a copy of that JSON for people and tools, written after
  the checkpoint; the record inside the step directory is the authority.

  Why it is safe inside `<workdir>/checkpoints/` (tests/test_best_checkpoint.py checks each):
  Checkpointer's orbax manager takes only directories named by a step number as checkpoints, so
  "best" is never listed, never removed by max_to_keep, never moved to checkpoints_damaged, and
  its clean-up of temporary directories does not descend into it.

  Comparability: FID depends on the backbone and on N, so a stored best whose metric name or
  `protocol` differs from this one's is not compared with: `best()` is None and the next save
  replaces it (said once on stdout). A non-finite value is never saved.
  A save writes synchronously (the state is small next to a training step and saves are rare),
  then deletes any other step; after a crash between the two, `best()` picks the lower value.
  """

  FILE = "best.json"

  def __init__(self, directory: str, metric: str | None = None, protocol: dict | None = None,
               *, read_only: bool = False):
    self.directory = os.path.abspath(directory)
    self.metric = metric
    self.protocol = None if protocol is None else json.loads(json.dumps(protocol))
    self.read_only = read_only
    if read_only:
      self._manager = read_only_manager(self.directory)
    else:
      self._manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=None, create=True,
                                               enable_async_checkpointing=False,
                                               cleanup_tmp_directories=True))
    self._records = None  # {step: record} of the readable steps, read once
    self._said_incomparable = False

  def _read_records(self) -> dict:
    if self._records is None:
      self._records = {}
      for step in sorted(self._manager.all_steps()):
        try:
          rec = self._manager.restore(step, args=ocp.args.Composite(best=ocp.args.JsonRestore()))
          rec = dict(rec.best)
          rec["step"], rec["value"] = int(rec["step"]), float(rec["value"])
        except Exception as e:  # orbax raises many types; a damaged best is simply not a best
          print(f"[igan_jax] WARNING: best checkpoint {step} in {self.directory} cannot be read "
                f"({type(e).__name__}); it will be replaced", flush=True)
          continue
        self._records[step] = rec
    return self._records

  def record(self) -> dict | None:
    """The stored best's full record (step, value, metric, protocol, time), comparable or not."""
    records = self._read_records()
    if not records:
      return None
    return min(records.values(), key=lambda r: (r["value"], -r["step"]))

  def _comparable(self, rec: dict) -> bool:
    return ((self.metric is None or rec.get("metric") == self.metric) and
            (self.protocol is None or rec.get("protocol") == self.protocol))

  def best(self) -> tuple[int, float] | None:
    """(step, value) of the stored best measured like this one, else None."""
    rec = self.record()
    if rec is None:
      return None
    if not self._comparable(rec):
      if not self._said_incomparable:
        self._said_incomparable = True
        print(f"[igan_jax] the best checkpoint in {self.directory} (step {rec['step']}, "
              f"{rec.get('metric')} = {rec['value']:.4g}) was measured differently (metric "
              f"or protocol); the next evaluation replaces it", flush=True)
      return None
    return rec["step"], rec["value"]

  def save(self, state: GANState, step: int, value: float) -> bool:
    """Saves `state` as the best when `value` is lower than the stored best's (or there is
    none); returns whether it saved."""
    if self.read_only:
      raise CheckpointError(f"{self.directory} was opened read-only")
    step, value = int(step), float(value)
    if not math.isfinite(value):
      return False
    current = self.best()
    if current is not None and not value < current[1]:
      return False
    record = dict(step=step, value=value, metric=self.metric, protocol=self.protocol,
                  time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    if step in self._manager.all_steps():
      # The same step again with a lower value: only after a rollback with a fresh rng. orbax
      # never overwrites a step, so the old one goes first (the one moment with no best).
      self._manager.delete(step)
    # force: orbax's manager otherwise skips a step lower than its latest (a resume from an
    # older checkpoint can beat the best at an earlier step).
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(to_checkpoint(state)), best=ocp.args.JsonSave(record)),
        force=True)
    self._manager.wait_until_finished()
    if step not in self._manager.all_steps():
      raise CheckpointError(f"saving the best checkpoint {step} in {self.directory} failed")
    for other in self._manager.all_steps():
      if other != step:
        self._manager.delete(other)
    self._records = {step: record}
    if parallel.is_primary():  # every process decided alike (the same FID); one writes
      path = os.path.join(self.directory, self.FILE)
      with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
      os.replace(path + ".tmp", path)
    return True

  def restore(self, target: GANState) -> GANState:
    """The best state, in target's structure; CheckpointError when there is none or it cannot
    be read."""
    rec = self.record()
    if rec is None:
      raise CheckpointError(
          f"no best checkpoint in {self.directory}; training keeps one when FID during "
          "training is on (--config.eval_every > 0)")
    step = rec["step"]
    return _restore_arrays(self._manager, step, target,
                           f"best checkpoint {step} in {self.directory}", item="state")

  def close(self):
    self._manager.close()


def save_config(workdir: str, config_dict: dict):
  path = os.path.join(workdir, "config.json")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(config_dict, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def load_saved_config(workdir: str) -> dict | None:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


# ---------------------------------------------------------------------------------------------
# Reading a run without training it.


def parse_checkpoint(step) -> int | str | None:
  """--checkpoint: None (the latest), a step number (int or digits) or "best"."""
  if step is None:
    return None
  if isinstance(step, numbers.Integral) and not isinstance(step, bool):  # numpy's too
    return int(step)
  text = str(step).strip()
  if text == "best":
    return "best"
  if text.isdigit():
    return int(text)
  raise CheckpointError(f"--checkpoint must be a step number or 'best', got {step!r}")


def checkpoint_steps(directory: str) -> list[int]:
  """The steps of the complete checkpoints in `directory`, from its entries alone (no orbax
  manager, which would create the directory): orbax names a complete checkpoint by its bare
  step number, and its temporary directories carry a suffix."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(e) for e in os.listdir(directory) if e.isdigit())


def restore_read_only(config, workdir: str, step: int | str | None = None
                      ) -> tuple[GANState, dict | None]:
  """(state, best record or None): checkpoint `step` of the run in `workdir`, read-only.

  step: None (the latest in <workdir>/checkpoints), a step number, or "best": the state
  BestCheckpointer kept in <workdir>/checkpoints/best/, returned with its record (step, value,
  metric, protocol, time). The target is `create_train_state(config)`, so `config` must be the
  one the run was trained with (its identity keys are checked against the workdir's
  config.json). Everything is checked before that state is built, and nothing is written.
  Raises WorkdirError or CheckpointError, each one line that says what to do.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if not os.path.isdir(workdir):
    raise WorkdirError(f"--workdir {workdir} does not exist; pass the workdir of a trained run")
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if step == "best":
    directory = best_directory(workdir)
    if not checkpoint_steps(directory):
      raise CheckpointError(
          f"no best checkpoint in {directory}; training keeps one when FID during training is "
          f"on (--config.eval_every > 0); or evaluate a step with --checkpoint=<step>")
  else:
    directory = ckpt_dir
    steps = checkpoint_steps(ckpt_dir)
    if not steps:
      raise CheckpointError(
          f"no checkpoint in {ckpt_dir}; train first with --mode=train --workdir={workdir}")
    if step is not None and step not in steps:
      raise CheckpointError(
          f"no checkpoint {step} in {ckpt_dir}; available: {', '.join(map(str, steps))}")
    step = steps[-1] if step is None else step
  saved = load_saved_config(workdir)
  if saved is not None:
    check_compatible(saved, config.to_dict(), workdir)
  # Read on whatever devices this machine has: a run trained on more is still readable.
  target = create_train_state(config, mesh=parallel.mesh_for(config, at_most_available=True))
  if directory != ckpt_dir:
    best = BestCheckpointer(directory, read_only=True)
    try:
      return best.restore(target), best.record()
    finally:
      best.close()
  manager = read_only_manager(ckpt_dir)
  try:
    state = _restore_arrays(
        manager, step, target, f"checkpoint {step} in {ckpt_dir}",
        hint="; evaluate another --checkpoint, or pass the --config this run was trained with")
  finally:
    manager.close()
  return state, None
