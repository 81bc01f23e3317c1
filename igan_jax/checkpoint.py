"""Checkpoints of a GANState with orbax: async and atomic saves, keep the last N, restore latest.

Orbax writes each step into a temporary directory and renames it when complete, so a killed run
leaves either a whole checkpoint or an ignorable temporary one. What is saved is the state's
arrays (`state.to_checkpoint`); the static parts come back from the config. The run's config is
kept beside the checkpoints as config.json, and a checkpoint from a run with a different model or
data shape is refused with a message that says what differs.
"""
from __future__ import annotations

import json
import os
import shutil
import time

import jax
import orbax.checkpoint as ocp

from igan_jax.state import GANState, from_checkpoint, to_checkpoint

# Config keys that change the state's shapes or meaning: resuming across them is refused.
IDENTITY_KEYS = ("model.name", "data.name", "data.resolution", "model.channels", "model.z_dim",
                 "model.d_widths", "model.d_norm", "n_critic", "batch_size")


class CheckpointError(RuntimeError):
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
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, to_checkpoint(target))
    try:
      restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax raises many types for a damaged or foreign checkpoint
      raise CheckpointError(
          f"checkpoint {step} in {self.directory} cannot be read ({type(e).__name__}: "
          f"{str(e).splitlines()[0][:200]})") from e
    return from_checkpoint(target, restored)

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
    src = os.path.join(self.directory, str(step))
    dst_dir = self.directory + "_damaged"
    os.makedirs(dst_dir, exist_ok=True)
    dst = os.path.join(dst_dir, str(step))
    if os.path.exists(dst):
      dst = f"{dst}.{int(time.time())}"
    shutil.move(src, dst)
    self._manager.reload()

  def wait(self):
    self._manager.wait_until_finished()

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
