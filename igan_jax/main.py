"""Command line: `python -m igan_jax.main --config=experiments/fashion_mnist.py --workdir=DIR`.

Flags only; the work is in train.py. Every user error (a bad config value or flag, a missing
dataset, an unusable workdir or checkpoint) ends with one line on stderr that names the fix, and
exit status 2, before anything is written into the workdir.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. experiments/fashion_mnist.py (':arg' picks a variant).",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, samples and logs.")
flags.DEFINE_string("compilation_cache", os.path.join("~", ".cache", "igan_jax", "xla"),
                    "Persistent XLA compilation cache ('' = off; $JAX_COMPILATION_CACHE_DIR wins): "
                    "a resumed run skips the compile of its training step (~40 s on CPU).")
flags.DEFINE_enum("mode", "train", ["train", "params", "evaluate"],
                  "train: train or resume in --workdir; params: print parameter counts; "
                  "evaluate: FID/KID/precision/recall/density/coverage of a checkpoint in "
                  "--workdir, written to <workdir>/eval/<step>.json (igan_jax/evaluate.py).")
flags.DEFINE_string("checkpoint", None,
                    "--mode=evaluate: a step number, or 'best' (the lowest-FID state kept by FID "
                    "during training, config.eval_every); default: the latest.")


def _fail(msg: str):
  print(f"igan_jax: error: {msg}", file=sys.stderr, flush=True)
  sys.exit(2)


def _precheck_config_args(argv):
  """Loads the --config file and checks each --config.KEY override names an existing key, so
  that these errors are one clear line (config_flags would defer them to a traceback)."""
  from igan_jax import config as config_lib

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
  from igan_jax import config as config_lib
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


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; flags are --config, --workdir, --mode")
  from igan_jax.workdir_lock import WorkdirError, WorkdirLocked, check_workdir
  if FLAGS.mode == "train" and FLAGS.workdir:
    # Before JAX starts and before the data loads: an unusable workdir fails in a second.
    try:
      check_workdir(FLAGS.workdir)
    except WorkdirError as e:
      _fail(str(e))
  if not FLAGS["verbosity"].present:
    # The libraries' INFO lines (orbax on every save, JAX's backend probing) would bury the
    # progress line; --verbosity=0 brings them back.
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.WARNING)
  import jax  # after flag parsing: errors above cost no JAX start-up

  if FLAGS.compilation_cache and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(FLAGS.compilation_cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

  from igan_jax import checkpoint, config as config_lib, data, models, train

  if FLAGS.config is None:
    _fail("--config is required, e.g. --config=experiments/fashion_mnist.py")
  try:
    config = config_lib.validate(FLAGS.config)
    if FLAGS.mode == "params":
      state = train.create_train_state(config)
      print(f"generator: {models.param_count(state.g.params):,} parameters")
      print(f"discriminator: {models.param_count(state.d.params):,} parameters")
      return
    if FLAGS.mode == "evaluate":
      from igan_jax import evaluate
      if not FLAGS.workdir:
        _fail("--workdir is required for --mode=evaluate: the workdir of a trained run")
      try:
        evaluate.evaluate_workdir(config, FLAGS.workdir, step=FLAGS.checkpoint)
      except evaluate.EvaluationError as e:
        _fail(str(e))
      return
    if not FLAGS.workdir:
      _fail("--workdir is required for --mode=train, e.g. --workdir=runs/fashion_mnist")
    print(f"[igan_jax] JAX {jax.__version__} on {jax.devices()[0].device_kind} "
          f"({jax.default_backend()}), {jax.device_count()} device(s)", flush=True)
    train.train_and_evaluate(config, FLAGS.workdir)
  except (config_lib.ConfigError, data.DatasetError, checkpoint.CheckpointError,
          WorkdirError, train.WorkdirError, WorkdirLocked) as e:
    _fail(str(e))
  except train.TrainingDiverged as e:
    print(f"igan_jax: stopped: {e}", file=sys.stderr, flush=True)
    sys.exit(3)


def run():
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
