"""On-device minibatch sampling from a resident uint8 image array.

The whole training set lives on the accelerator as uint8 (Fashion-MNIST train
is 47 MB), so a batch is an index draw plus a gather inside the jitted train
step: no host input pipeline, and the draw is a pure function of the key.
Indices are drawn uniformly *with replacement*, i.e. i.i.d. minibatches, not
epochs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _to_unit_range(x_u8: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [-1, 1] (0 -> -1, 255 -> 1 exactly).

  x / 127.5 - 1 up to one float32 ulp.  That literal form maps 255 to
  1.0000001 (1/127.5 rounds up), so we divide the centred value instead, and
  clip in case a compiler turns the division into a reciprocal multiply.
  """
  return jnp.clip((x_u8.astype(jnp.float32) - 127.5) / 127.5, -1.0, 1.0)


@functools.partial(jax.jit, static_argnames=("shape",))
def sample_batches(images_u8: jax.Array, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Draws images uniformly with replacement; returns float32 in [-1, 1].

  Args:
    images_u8: (N, H, W, C) uint8, ideally already on device.
    key: a PRNG key.
    shape: leading shape of the result, e.g. (n_critic, batch_size).

  Returns:
    float32 array of shape `shape + (H, W, C)`.
  """
  idx = jax.random.randint(key, shape, 0, images_u8.shape[0])
  return _to_unit_range(images_u8[idx])


@functools.partial(jax.jit, static_argnames=("shape", "num_classes"))
def sample_class_batches(images_u8: jax.Array, labels: jax.Array, key: jax.Array,
                         shape: tuple[int, ...], num_classes: int
                         ) -> tuple[jax.Array, jax.Array]:
  """Class-balanced draw: a uniform class, then a uniform image of that class.

  Every class is drawn with probability 1/num_classes whatever its size
  (with replacement).  Every class in 0..num_classes-1 must occur in
  `labels`; for a class that does not, the draw would fall on the next
  occurring class, so check that on the host if labels are untrusted.

  Args:
    images_u8: (N, H, W, C) uint8.
    labels: (N,) int labels in [0, num_classes).
    key: a PRNG key.
    shape: leading shape of the result.
    num_classes: number of classes (static).

  Returns:
    (images float32 of shape `shape + (H, W, C)` in [-1, 1], labels int32 of
    shape `shape`).
  """
  labels = labels.astype(jnp.int32)
  # Indices sorted by class; class c occupies order[starts[c]:starts[c]+counts[c]].
  order = jnp.argsort(labels, stable=True)
  counts = jnp.bincount(labels, length=num_classes)
  starts = jnp.cumsum(counts) - counts
  k_class, k_item = jax.random.split(key)
  cls = jax.random.randint(k_class, shape, 0, num_classes)
  # u in [0, 1) -> offset in [0, count): uniform within the class.
  u = jax.random.uniform(k_item, shape)
  offset = jnp.minimum((u * counts[cls]).astype(jnp.int32), counts[cls] - 1)
  idx = order[starts[cls] + jnp.maximum(offset, 0)]
  return _to_unit_range(images_u8[idx]), labels[idx]


@functools.partial(jax.jit, static_argnames=("shape",))
def sample_per_class_batches(images_u8: jax.Array, order: jax.Array, starts: jax.Array,
                             counts: jax.Array, key: jax.Array, shape: tuple[int, int]
                             ) -> jax.Array:
  """One batch per class: for IGAN_V2/VN's per-class discriminators (docs/paper.md §1.2).

  Class k's images are `images_u8[order[starts[k] : starts[k] + counts[k]]]`
  (`igan_jax.input_pipeline.class_index` builds this once on the host);
  each image of class k is drawn uniformly with replacement among them.

  Args:
    images_u8: (M, H, W, C) uint8.
    order, starts, counts: the class index; starts/counts have length N.
    key: a PRNG key.
    shape: (n_critic, batch).

  Returns:
    float32 (n_critic, N, batch, H, W, C) in [-1, 1]; [:, k] is class k.
  """
  n_critic, batch = shape
  n = starts.shape[0]
  u = jax.random.uniform(key, (n_critic, n, batch))
  size = counts[None, :, None]
  offset = jnp.minimum((u * size).astype(jnp.int32), size - 1)
  idx = order[starts[None, :, None] + offset]
  return _to_unit_range(images_u8[idx])


def to_unit_range(x_u8: jax.Array) -> jax.Array:
  """uint8 [0, 255] -> float32 [-1, 1], as every sampler here converts."""
  return _to_unit_range(x_u8)
