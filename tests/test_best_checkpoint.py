"""checkpoint.BestCheckpointer: keeps the lowest-metric state in <workdir>/checkpoints/best/,
survives a resume, and lives beside Checkpointer without being listed, deleted or moved by it.

States here are toy GANStates (a few arrays, no network) so nothing compiles: what is tested is
the bookkeeping, which does not depend on the model."""
import json
import os

import jax.numpy as jnp
import optax
import pytest

from igan_jax import checkpoint
from igan_jax.state import GANState, ModelState, StepConfig

HP = StepConfig(batch_size=4, n_critic=1, z_dim=3, loss="least_squares", real_label=1.0,
                fake_label=0.0, gp_weight=0.0, noise_std=0.0)


def toy_state(step, fill=0.0):
  def ms(n):
    return ModelState.create(apply_fn=None, params={"w": jnp.full((n,), fill, jnp.float32)},
                             tx=optax.sgd(0.1))
  return GANState(step=jnp.asarray(step, jnp.int32), rng=jnp.zeros((2,), jnp.uint32), g=ms(3),
                  d=ms(2), hp=HP)


def restored_fill(best):
  return float(best.restore(toy_state(0)).g.params["w"][0])


def step_dirs(directory):
  return sorted(int(e) for e in os.listdir(directory) if e.isdigit())


def test_keeps_only_the_lowest_value(tmp_path):
  d = checkpoint.best_directory(str(tmp_path))
  assert d == str(tmp_path / "checkpoints" / "best")
  best = checkpoint.BestCheckpointer(d, metric="fid_classifier")
  assert best.best() is None and best.record() is None
  assert best.save(toy_state(10, 1.0), 10, 50.0)
  assert not best.save(toy_state(20, 2.0), 20, 60.0)         # worse
  assert not best.save(toy_state(25, 2.5), 25, 50.0)         # equal is not better
  assert not best.save(toy_state(27, 2.7), 27, float("nan"))  # never a NaN
  assert best.save(toy_state(30, 3.0), 30, 40.0)
  assert best.best() == (30, 40.0)
  assert step_dirs(d) == [30]  # max 1
  assert restored_fill(best) == 3.0
  rec = json.load(open(os.path.join(d, "best.json")))
  assert rec["step"] == 30 and rec["value"] == 40.0 and rec["metric"] == "fid_classifier"
  best.close()


def test_a_resume_keeps_the_right_best(tmp_path):
  d = checkpoint.best_directory(str(tmp_path))
  best = checkpoint.BestCheckpointer(d, metric="fid_classifier", protocol={"n": 2000})
  assert best.save(toy_state(100, 1.0), 100, 20.0)
  best.close()
  # A new process (resume) reads the stored best and does not replace it with a worse one ...
  best = checkpoint.BestCheckpointer(d, metric="fid_classifier", protocol={"n": 2000})
  assert best.best() == (100, 20.0)
  assert not best.save(toy_state(200, 2.0), 200, 25.0)
  # ... but does with a better one, even at a step below the stored one (resumed from an older
  # checkpoint), and even at the same step (a rollback reached it again with a fresh rng).
  assert best.save(toy_state(50, 3.0), 50, 10.0)
  assert best.best() == (50, 10.0) and step_dirs(d) == [50]
  assert best.save(toy_state(50, 4.0), 50, 9.0)
  assert best.best() == (50, 9.0) and step_dirs(d) == [50] and restored_fill(best) == 4.0
  best.close()


def test_a_best_measured_differently_is_replaced(tmp_path, capsys):
  d = checkpoint.best_directory(str(tmp_path))
  best = checkpoint.BestCheckpointer(d, metric="fid_classifier", protocol={"n": 2000})
  assert best.save(toy_state(100), 100, 5.0)
  best.close()
  best = checkpoint.BestCheckpointer(d, metric="fid_inception", protocol={"n": 2000})
  assert best.best() is None and best.record()["metric"] == "fid_classifier"
  assert "measured differently" in capsys.readouterr().out
  assert best.save(toy_state(200), 200, 80.0)  # any value: the old one is not comparable
  assert best.best() == (200, 80.0) and step_dirs(d) == [200]
  best.close()
  best = checkpoint.BestCheckpointer(d, metric="fid_inception", protocol={"n": 500})
  assert best.best() is None  # N differs: FID's bias depends on N
  best.close()


def test_read_only_and_missing(tmp_path):
  d = checkpoint.best_directory(str(tmp_path))
  best = checkpoint.BestCheckpointer(d, metric="m")
  with pytest.raises(checkpoint.CheckpointError, match="no best checkpoint"):
    best.restore(toy_state(0))
  best.save(toy_state(7, 7.0), 7, 1.0)
  best.close()
  ro = checkpoint.BestCheckpointer(d, read_only=True)
  assert ro.best() == (7, 1.0) and restored_fill(ro) == 7.0
  with pytest.raises(checkpoint.CheckpointError, match="read-only"):
    ro.save(toy_state(8), 8, 0.5)
  ro.close()


def test_damaged_best_is_replaced_not_fatal(tmp_path):
  d = checkpoint.best_directory(str(tmp_path))
  best = checkpoint.BestCheckpointer(d, metric="m")
  best.save(toy_state(7, 7.0), 7, 1.0)
  best.close()
  for root, _, files in os.walk(os.path.join(d, "7")):
    for f in files:
      open(os.path.join(root, f), "wb").write(b"garbage")
  best = checkpoint.BestCheckpointer(d, metric="m")
  assert best.best() is None
  assert best.save(toy_state(9, 9.0), 9, 3.0)
  assert step_dirs(d) == [9] and restored_fill(best) == 9.0
  best.close()


def test_checkpointer_never_lists_deletes_or_moves_best(tmp_path):
  ckpt_dir = str(tmp_path / "checkpoints")
  best = checkpoint.BestCheckpointer(checkpoint.best_directory(str(tmp_path)), metric="m")
  best.save(toy_state(1, 1.0), 1, 5.0)
  best.close()
  ck = checkpoint.Checkpointer(ckpt_dir, max_to_keep=1)
  assert ck.all_steps() == [] and ck.latest_step() is None  # "best" is not a step
  for step in (1, 2, 3):  # max_to_keep=1 deletes 1 and 2, never best/
    ck.save(toy_state(step, float(step)))
    ck.wait()
  assert ck.all_steps() == [3]
  ck.close()
  # A damaged newest checkpoint is moved aside on resume; best/ stays where it is.
  ck = checkpoint.Checkpointer(ckpt_dir, max_to_keep=3)
  ck.save(toy_state(4, 4.0))
  ck.wait()
  for root, _, files in os.walk(os.path.join(ckpt_dir, "4")):
    for f in files:
      open(os.path.join(root, f), "wb").write(b"garbage")
  state, skipped = ck.restore_latest_good(toy_state(0))
  assert int(state.step) == 3 and [s for s, _ in skipped] == [4]
  assert os.listdir(ckpt_dir + "_damaged") == ["4"]
  ck.close()
  # Reopening (which cleans up temporary directories) leaves best/ alone, too.
  ck = checkpoint.Checkpointer(ckpt_dir)
  assert ck.all_steps() == [3]
  ck.close()
  assert sorted(os.listdir(ckpt_dir)) == ["3", "best"]
  best = checkpoint.BestCheckpointer(checkpoint.best_directory(str(tmp_path)), metric="m")
  assert best.best() == (1, 5.0) and restored_fill(best) == 1.0
  best.close()


def test_crash_between_save_and_cleanup_keeps_the_lower(tmp_path):
  """Two step directories (a crash after the new save, before the old one was deleted): the
  lower value is the best, and the next save leaves one."""
  d = checkpoint.best_directory(str(tmp_path))
  best = checkpoint.BestCheckpointer(d, metric="m")
  best.save(toy_state(5, 5.0), 5, 2.0)
  best.close()
  import orbax.checkpoint as ocp
  from igan_jax.state import to_checkpoint
  m = ocp.CheckpointManager(
      d, options=ocp.CheckpointManagerOptions(enable_async_checkpointing=False))
  m.save(6, args=ocp.args.Composite(state=ocp.args.StandardSave(to_checkpoint(toy_state(6, 6.0))),
                                    best=ocp.args.JsonSave(dict(step=6, value=1.0, metric="m",
                                                                protocol=None))))
  m.close()
  best = checkpoint.BestCheckpointer(d, metric="m")
  assert step_dirs(d) == [5, 6] and best.best() == (6, 1.0) and restored_fill(best) == 6.0
  assert best.save(toy_state(8, 8.0), 8, 0.5) and step_dirs(d) == [8]
  best.close()


def test_restore_read_only_reads_a_step_or_the_best_and_writes_nothing(tmp_path, monkeypatch):
  """checkpoint.restore_read_only, the one read-only path (--mode=evaluate, the run report): the
  latest step, a step or the best; a save in flight (orbax's temporary directory) is left
  alone, and every error is one line, raised before the target state is built."""
  from helpers import tiny_config
  from igan_jax.workdir_lock import WorkdirError
  config = tiny_config()
  built = []
  monkeypatch.setattr(checkpoint, "create_train_state",
                      lambda c, mesh=None: built.append(c) or toy_state(0))  # no compiling
  wd = str(tmp_path / "wd")
  with pytest.raises(WorkdirError, match="does not exist"):
    checkpoint.restore_read_only(config, wd)
  os.makedirs(wd)
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint in .*--mode=train"):
    checkpoint.restore_read_only(config, wd)
  assert os.listdir(wd) == []  # nothing created
  ck = checkpoint.Checkpointer(os.path.join(wd, "checkpoints"))
  for step in (2, 4):
    ck.save(toy_state(step, float(step)))
  ck.wait()
  ck.close()
  checkpoint.save_config(wd, config.to_dict())
  in_flight = os.path.join(wd, "checkpoints", "6.orbax-checkpoint-tmp-1700000000")
  os.makedirs(in_flight)
  state, record = checkpoint.restore_read_only(config, wd)
  assert int(state.step) == 4 and float(state.g.params["w"][0]) == 4.0 and record is None
  state, _ = checkpoint.restore_read_only(config, wd, 2)
  assert int(state.step) == 2
  assert os.path.isdir(in_flight)  # a read-only manager cleans nothing up
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint 7 .*available: 2, 4"):
    checkpoint.restore_read_only(config, wd, 7)
  with pytest.raises(checkpoint.CheckpointError, match="no best checkpoint.*eval_every"):
    checkpoint.restore_read_only(config, wd, "best")
  best = checkpoint.BestCheckpointer(checkpoint.best_directory(wd), metric="m")
  best.save(toy_state(2, 2.0), 2, 0.5)
  best.close()
  state, record = checkpoint.restore_read_only(config, wd, "best")
  assert float(state.g.params["w"][0]) == 2.0 and (record["step"], record["value"]) == (2, 0.5)
  other = tiny_config(**{"batch_size": 8})
  n_built = len(built)
  with pytest.raises(checkpoint.CheckpointError, match="batch_size"):
    checkpoint.restore_read_only(other, wd)
  assert len(built) == n_built  # refused before building anything
