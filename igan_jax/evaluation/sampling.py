"""The evaluation's generated images: fixed latents, uint8 quantisation, fixed-size batches.

A generator is passed in as a function `generate(z) -> images in [−1, 1]`, (B, H, W, C) or, for
the class-stacked models, (K, B, H, W, C) (one image per class); this module knows no state and
no training. Latents: z = N(0, I) drawn with jax.random.fold_in(PRNGKey(EVAL_KEY), seed) — fixed
per seed, independent of a run's config.seed and of its training keys. Quantisation: exactly as
the real images are stored (clean-fid's lesson, Parmar et al. 2022), before any backbone sees
them.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

EVAL_KEY = 0xE7A1  # base PRNG key of the evaluation latents (not the run's seed)


def eval_latents(seed: int, n: int, z_dim: int) -> jax.Array:
  """The n evaluation latents of `seed`, (n, z_dim)."""
  return jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(EVAL_KEY), seed), (n, z_dim))


def quantise(images: np.ndarray) -> np.ndarray:
  """[−1, 1] floats → uint8, q = clip(round((x + 1)·127.5), 0, 255) (round half to even), the
  same rule the backbones apply to float input."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def images_per_latent(generate: Callable, z_dim: int) -> int:
  """K: how many images `generate` makes from one latent (N for igan_v2/vn, whose output is
  (N, B, H, W, C), one image per class; else 1). Traced, not compiled."""
  shape = jax.eval_shape(generate, jax.ShapeDtypeStruct((1, z_dim), jnp.float32)).shape
  return int(shape[0]) if len(shape) == 5 else 1


def flatten_classes(x):
  """(K, B, H, W, C) → (B·K, H, W, C), latent-major (image i is class i % K of latent i // K),
  so the first n images of a batch hold every class equally (± 1); 4-D input is returned as is."""
  if x.ndim != 5:
    return x
  return x.swapaxes(0, 1).reshape((-1,) + tuple(x.shape[2:]))


def latent_batches(n: int, k: int, batch_size: int) -> tuple[int, int]:
  """(latents, latents per batch) for n images when one latent gives k: ceil(n / k) latents,
  batches of max(1, batch_size // k) latents, i.e. at most batch_size images per batch."""
  m = -(-n // k)
  return m, min(m, max(1, batch_size // k))


def generate_images(generate: Callable, z_dim: int, seed: int, n: int, batch_size: int,
                    multiple_of: int = 1) -> np.ndarray:
  """n uint8 images of `generate` from the evaluation latents of `seed`, in fixed-size batches
  (one compile; the last batch is padded with zero latents and cut).

  multiple_of: the latents per batch rounded up to a multiple of it: the device count of a
  generator that splits its latents over a mesh (inference.generate computes a batch the
  devices do not divide whole on every device).

  Class-stacked generators (K images per latent): ceil(n / K) latents, their K images each in
  latent-major order (`flatten_classes`), the first n kept.
  """
  k = images_per_latent(generate, z_dim)
  m, bs = latent_batches(n, k, batch_size)
  bs = -(-bs // multiple_of) * multiple_of
  z = np.asarray(eval_latents(seed, m, z_dim))
  out = None
  for start in range(0, m, bs):
    chunk = z[start:start + bs]
    valid = chunk.shape[0]
    if valid < bs:
      chunk = np.concatenate([chunk, np.zeros((bs - valid, chunk.shape[1]), chunk.dtype)])
    x = flatten_classes(quantise(jax.device_get(generate(chunk))))
    x = x[:min(valid * k, n - start * k)]
    if out is None:
      out = np.empty((n,) + x.shape[1:], np.uint8)
    out[start * k:start * k + len(x)] = x
  return out
