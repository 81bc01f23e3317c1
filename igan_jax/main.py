"""Command line: `python -m igan_jax.main --config=experiments/fashion_mnist.py --workdir=DIR`,
or `igan-jax ...` with the same flags once the package is installed (`pip install .`).

Flags only; the work is in train.py (evaluation/workdir.py, sample.py for the other modes),
and FID during training is built here (evaluation/during_training.py) and handed to training.
Every user error (a bad config value or flag, a missing dataset, an unusable workdir or
checkpoint) ends with one line on stderr that names the fix, and exit status 2, before anything
is written into the workdir.

Several processes (one per host, each with its devices): the same command on every host with
--coordinator_address=HOST0:PORT --num_processes=P --process_id=i (i = 0..P-1); without these
flags the run is one process. The processes join through jax.distributed before anything else
runs (igan_jax/parallel.py); process 0 writes the logs, images and records, and every process
takes part in the checkpoints.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from igan_jax import config as config_lib
from igan_jax.errors import UserError
from igan_jax.workdir_lock import WorkdirError, check_workdir

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. experiments/fashion_mnist.py (':arg' picks a variant).",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, samples and logs.")
flags.DEFINE_string("compilation_cache", os.path.join("~", ".cache", "igan_jax", "xla"),
                    "Persistent XLA compilation cache ('' = off; $JAX_COMPILATION_CACHE_DIR wins): "
                    "a resumed run skips the compile of its training step.")
flags.DEFINE_enum("mode", "train", ["train", "params", "evaluate", "sample"],
                  "train: train or resume in --workdir; params: print parameter counts; "
                  "evaluate: FID/KID/precision/recall/density/coverage of a checkpoint in "
                  "--workdir, written to <workdir>/eval/<step>.json "
                  "(igan_jax/evaluation/workdir.py); "
                  "sample: --num_images PNG files and one images.npz of a checkpoint in "
                  "--workdir, written to --out (igan_jax/sample.py; without --config it uses "
                  "the workdir's config.json).")
flags.DEFINE_string("checkpoint", None,
                    "--mode=evaluate/sample: a step number, or 'best' (the lowest-FID state kept "
                    "by FID during training, config.eval_every); default: the latest.")
flags.DEFINE_integer("num_images", 64, "--mode=sample: how many images to write (igan_v2/vn: "
                     "in all, every class equally often).", lower_bound=1)
flags.DEFINE_integer("seed", 0, "--mode=sample: the latent seed (the evaluation's latents of "
                     "this seed, not config.seed): the same seed gives the same images.",
                     lower_bound=0)
flags.DEFINE_string("coordinator_address", None, "Several processes: host:port of process 0 "
                    "(the same on every process). Absent: one process.")
flags.DEFINE_integer("num_processes", None, "Several processes: how many (the same on every "
                     "process).")
flags.DEFINE_integer("process_id", None, "Several processes: this process's number, "
                     "0..num_processes-1 (0 writes the logs and images).")
flags.DEFINE_integer("distributed_timeout", 300, "Several processes: seconds to wait for every "
                     "process to join before giving up (exit status 2).", lower_bound=1)
flags.DEFINE_string("out", None, "--mode=sample: a new or empty directory for the images "
                    "(default <workdir>/generated/<step>/).")


def _fail(msg: str):
  print(f"igan_jax: error: {msg}", file=sys.stderr, flush=True)
  sys.exit(2)


def _precheck_config_args(argv):
  """Loads the --config file and checks each --config.KEY override names an existing key, so
  that these errors are one clear line (config_flags would defer them to a traceback)."""
  path, overrides = None, []
  for i, a in enumerate(argv[1:], 1):
    if a.startswith("--config="):
      path = a.split("=", 1)[1]
    elif a == "--config" and i + 1 < len(argv):
      path = argv[i + 1]
    elif a.startswith("--config."):
      overrides.append(a[len("--config."):].split("=", 1)[0])
  if path is None:
    return
  arg = None
  if ":" in path and not os.path.exists(path):
    path, arg = path.split(":", 1)
  config = config_lib.load_config(path, arg, check=False)
  for key in overrides:
    if not config_lib.has_key(config, key):
      raise config_lib.ConfigError(
          f"unknown config key {key!r} (from --config.{key}); the keys are in "
          f"igan_jax/config.py base_config()")


def _parse_flags(argv):
  try:
    _precheck_config_args(argv)
  except config_lib.ConfigError as e:
    _fail(str(e))
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0])
  except Exception as e:  # config file import failures surface here
    _fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": "))


def _several_processes() -> bool:
  """Whether the run has several processes; one line and exit status 2 for process flags that
  do not fit together. Checked before JAX starts."""
  address, count, index = FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
  if address is None and count is None and index is None:
    return False
  if count is None or count < 1:
    _fail("--num_processes must be ≥ 1 with --coordinator_address/--process_id; pass the "
          "number of processes of the run")
  if index is None or not 0 <= index < count:
    _fail(f"--process_id={index} is out of range for --num_processes={count}; pass "
          f"0..{count - 1}, a different one to each process")
  if count > 1 and not address:
    _fail("--coordinator_address (host:port of process 0) is required with --num_processes > 1")
  if count > 1 and FLAGS.mode != "train":
    _fail(f"--mode={FLAGS.mode} runs in one process; drop --num_processes/--process_id/"
          "--coordinator_address")
  return count > 1


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; flags are --config, --workdir, --mode")
  several = _several_processes()
  if FLAGS.mode == "train" and FLAGS.workdir:
    # Before JAX starts and before the data loads: an unusable workdir fails in a second.
    try:
      check_workdir(FLAGS.workdir)
    except WorkdirError as e:
      _fail(str(e))
  if not FLAGS["verbosity"].present:
    # The libraries' INFO lines (orbax on every save, JAX's backend probing) would bury the
    # progress line; --verbosity=0 brings them back.
    absl_logging.set_verbosity(absl_logging.WARNING)
  import jax  # after flag parsing: errors above cost no JAX start-up

  from igan_jax import parallel  # late, like jax: it loads JAX
  if several:
    try:  # before any other JAX call: the processes join first
      parallel.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                          FLAGS.distributed_timeout)
    except parallel.DistributedError as e:
      print(f"igan_jax: error: {e}", file=sys.stderr, flush=True)
      sys.stdout.flush()
      os._exit(2)  # not sys.exit: JAX's join thread may still be waiting, and cannot be stopped
  if FLAGS.compilation_cache and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(FLAGS.compilation_cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

  # Late, like jax: these load JAX and Flax, and every error above fails without that cost.
  from igan_jax import models, sample, train
  from igan_jax.evaluation import during_training, workdir as evaluation_workdir

  if FLAGS.mode == "sample" and not FLAGS.workdir:
    _fail("--workdir is required for --mode=sample: the workdir of a trained run")
  if FLAGS.config is None and FLAGS.mode != "sample":
    _fail("--config is required, e.g. --config=experiments/fashion_mnist.py")
  try:
    if FLAGS.config is None:  # --mode=sample: the config the run was trained with
      config = sample.run_config(FLAGS.workdir)
    else:
      config = config_lib.validate(FLAGS.config)
    if FLAGS.mode == "sample":
      done = sample.sample_workdir(config, FLAGS.workdir, step=FLAGS.checkpoint,
                                   num_images=FLAGS.num_images, seed=FLAGS.seed, out_dir=FLAGS.out)
      print(f"[igan_jax] sample: {done['num_images']} images of step {done['step']} (seed "
            f"{done['seed']}) written to {done['out_dir']}", flush=True)
      return
    if FLAGS.mode == "params":
      state = train.create_train_state(config)
      print(f"generator: {models.param_count(state.g.params):,} parameters")
      print(f"discriminator: {models.param_count(state.d.params):,} parameters")
      return
    if FLAGS.mode == "evaluate":
      if not FLAGS.workdir:
        _fail("--workdir is required for --mode=evaluate: the workdir of a trained run")
      evaluation_workdir.evaluate_workdir(config, FLAGS.workdir, step=FLAGS.checkpoint)
      return
    if not FLAGS.workdir:
      _fail("--workdir is required for --mode=train, e.g. --workdir=runs/fashion_mnist")
    print(f"[igan_jax] JAX {jax.__version__} on {jax.devices()[0].device_kind} "
          f"({jax.default_backend()}), {jax.device_count()} device(s)"
          + (f", process {jax.process_index()} of {jax.process_count()}" if several else ""),
          flush=True)
    train.train_and_evaluate(config, FLAGS.workdir,
                             evaluator=during_training.for_config(config))
  except UserError as e:  # every error the user can fix: one line, exit status 2
    _fail(str(e))
  except train.TrainingDiverged as e:
    print(f"igan_jax: stopped: {e}", file=sys.stderr, flush=True)
    sys.exit(3)


def run():
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
