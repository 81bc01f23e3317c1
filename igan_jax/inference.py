"""Images from a state's generator, in inference mode: `generate(state, z)`.

Inference mode is the generator with its running batch-norm statistics and no dropout. Training
(the sample grids), evaluation (FID during training, `--mode=evaluate`) and the library API
(`igan_jax.generate`) all draw images through `generate`; it lives apart from train.py so that
evaluation never imports training (docs/design.md §2).

Over the state's `data` mesh (igan_jax/parallel.py) the latents are split along the batch (when
the devices divide it) and the images come back whole on every device, so the host can read them
from any process.
"""
from __future__ import annotations

import functools

import jax
import numpy as np

from igan_jax import parallel
from igan_jax.compile_options import jit
from igan_jax.state import GANState

GRID_LATENTS_STREAM = 0x5A3D  # fold_in id of a run's sample-grid latents (not a training stream)


def generate_split(state: GANState, z, use_ema: bool = False):
  """`generate`'s images (every class) left split along the batch axis over the mesh, as the
  latents were: for use inside another jitted program whose consumer splits them the same way
  (evaluation's generator → backbone program), which then never gathers them."""
  params = state.g_ema if use_ema else state.g.params
  z = parallel.shard_batch(z, state.mesh, 0)
  return state.g.apply_fn(state.g.variables(params), z, train=False)


@functools.partial(jit, static_argnames="use_ema")
def _generate(state: GANState, z, use_ema=False):
  return parallel.keep_replicated(generate_split(state, z, use_ema), state.mesh)


def generate(state: GANState, z: jax.Array, use_ema: bool = False,
             label: int | None = None) -> jax.Array:
  """Images in [−1, 1] from latents z (B, z_dim); inference mode (running BN stats, no dropout).

  (B, H, W, C); the class-stacked models give one image per class, (N, B, H, W, C), or with
  `label` = k only class k's (B, H, W, C)."""
  if use_ema and state.g_ema is None:
    raise ValueError("this state has no EMA generator (config.ema_decay is 0)")
  n = state.hp.num_classes
  if label is not None and (n == 1 or not 0 <= label < n):
    raise ValueError(f"label={label}: this model has {n} class(es); "
                     + ("pass label=None" if n == 1 else f"pass 0..{n - 1} or None"))
  out = _generate(state, z, use_ema=use_ema)
  return out if label is None else out[label]


def sample_grid_images(state: GANState, fixed_z: jax.Array) -> tuple[np.ndarray, int | None]:
  """(images, columns) of a run's sample grid: for the class-stacked models one row per class."""
  images = np.asarray(jax.device_get(generate(state, fixed_z)))
  if state.hp.num_classes == 1:
    return images, None
  return images.reshape((-1,) + images.shape[2:]), images.shape[1]


def sample_latents(state: GANState, n: int) -> jax.Array:
  """The run's fixed latents for sample grids: the same z at every step of a run (for the
  class-stacked models n // N of them, at least 4: the grid has N rows of those)."""
  if state.hp.num_classes > 1:
    n = max(4, n // state.hp.num_classes)
  return jax.random.normal(jax.random.fold_in(state.rng, GRID_LATENTS_STREAM),
                           (n, state.hp.z_dim))
