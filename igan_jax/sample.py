"""Images from a trained run: `igan-jax --mode=sample --workdir=DIR` (`sample_workdir`).

For one checkpoint of `<workdir>/checkpoints` (the latest, a step, or "best": the same choice
as `--mode=evaluate --checkpoint`), restored read-only, it writes N images to
`<workdir>/generated/<step>/` (or `out_dir`):

  000000.png, 000001.png, ...   image i; for the class-stacked models (igan_v2 / igan_vn, one
                                head per class, docs/paper.md §1.2) in `class_<label>/`, with
                                <label> the dataset label the head was trained on
  images.npz                    images: uint8 (N, H, W, C), row i = file i; seed; step; and for
                                the class-stacked models labels: (N,) dataset labels

The images are drawn and quantised exactly as `--mode=evaluate` draws them, from the
evaluation's latents of `seed` (evaluation/sampling.py; independent of the run's config.seed):
the same checkpoint, seed and N give the same files. A class-stacked generator makes one image per
class from each latent, so N images come from ceil(N / K) latents, latent-major: image i is
class i % K (every class equally often, ± 1), as in the evaluation.

The directory is filled under a temporary name and renamed when complete, so a killed command
leaves no half-written `<step>/`; an existing, non-empty output directory is refused rather
than mixed with other images. config.eval.use_ema picks the EMA generator, as for evaluation.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
from PIL import Image

from igan_jax import config as config_lib
from igan_jax.errors import UserError
# The read-only restore and the generation that --mode=evaluate uses: the one place this module
# names them.
from igan_jax.checkpoint import load_saved_config, parse_checkpoint, restore_read_only
from igan_jax.evaluation.workdir import state_images
from igan_jax.input_pipeline import model_classes

GENERATED_DIR = "generated"  # <workdir>/generated/<step>/
NPZ_NAME = "images.npz"


class SampleError(UserError, RuntimeError):
  """Images cannot be written as asked; str(e) says what to do."""


def run_config(workdir: str):
  """The config `workdir` was trained with (its config.json): what --mode=sample uses when no
  --config is given."""
  if not os.path.isdir(workdir):
    raise SampleError(f"--workdir {workdir} does not exist; pass the workdir of a trained run")
  saved = load_saved_config(workdir)
  if saved is None:
    raise SampleError(f"{workdir} has no config.json (not a training workdir?); pass the "
                      "--config the run was trained with")
  return config_lib.from_saved(saved)


def class_labels(config, n: int) -> np.ndarray | None:
  """The dataset label of each of n images of a class-stacked model (image i is its class
  i % K, see the module docstring); None for the one-class models."""
  classes = model_classes(config)
  if classes is None:
    return None
  return np.asarray(classes, np.int64)[np.arange(n) % len(classes)]


def image_relpath(i: int, label: int | None) -> str:
  """Where image i goes inside the output directory."""
  name = f"{i:06d}.png"
  return name if label is None else os.path.join(f"class_{label}", name)


def write_images(out_dir: str, images: np.ndarray, labels: np.ndarray | None, seed: int,
                 step: int):
  """The PNG files and images.npz into a new directory `out_dir`, written under a temporary
  name and renamed when complete."""
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(parent, f".{os.path.basename(out_dir)}.tmp{os.getpid()}")
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    for i, image in enumerate(images):
      label = None if labels is None else int(labels[i])
      path = os.path.join(tmp, image_relpath(i, label))
      os.makedirs(os.path.dirname(path), exist_ok=True)
      Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path, format="PNG")
    extra = {} if labels is None else dict(labels=labels)
    np.savez_compressed(os.path.join(tmp, NPZ_NAME), images=images, seed=np.int64(seed),
                        step=np.int64(step), **extra)
    if os.path.isdir(out_dir):
      os.rmdir(out_dir)  # empty (checked before generating): the rename needs it gone
    os.rename(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def check_out_dir(out_dir: str):
  if os.path.isfile(out_dir) or (os.path.isdir(out_dir) and os.listdir(out_dir)):
    raise SampleError(f"{out_dir} already exists and is not empty; remove it, or pass "
                      "--out=<a new directory>")


def sample_workdir(config, workdir: str, step=None, num_images: int = 64, seed: int = 0,
                   out_dir: str | None = None, batch_size: int | None = None) -> dict:
  """Writes `num_images` images of checkpoint `step` (None: the latest; a step; "best") of the
  run in `workdir` (see the module docstring); returns {"out_dir", "step", "num_images",
  "seed", "labels"}. Raises WorkdirError / CheckpointError / SampleError, each one line that
  says what to do, before anything is written."""
  if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) \
      or num_images < 1:
    raise SampleError(f"--num_images must be a positive integer, got {num_images!r}")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise SampleError(f"--seed must be an integer ≥ 0, got {seed!r}")
  workdir = os.path.abspath(os.path.expanduser(workdir))
  state, _ = restore_read_only(config, workdir, parse_checkpoint(step))  # _: best's record
  step = int(state.step)  # for "best": the training step whose state it kept
  out_dir = os.path.abspath(os.path.expanduser(
      out_dir or os.path.join(workdir, GENERATED_DIR, str(step))))
  check_out_dir(out_dir)
  use_ema = bool(config.eval.get("use_ema", False))
  if use_ema and state.g_ema is None:
    raise config_lib.ConfigError("config.eval.use_ema: this run has no EMA generator "
                                 "(config.ema_decay is 0); set use_ema=False")
  batch_size = batch_size or int(config.eval.get("batch_size", 500))
  images = state_images(state, int(seed), int(num_images), batch_size, use_ema)
  labels = class_labels(config, len(images))
  write_images(out_dir, images, labels, int(seed), step)
  return dict(out_dir=out_dir, step=step, num_images=len(images), seed=int(seed), labels=labels)
