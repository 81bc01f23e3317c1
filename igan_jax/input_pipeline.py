"""The real images a training run draws from: resident on the device, or streamed from the host.

Two forms, chosen by `load_training_data(config)` from `config.data.stream`:

- `ResidentData` (a pytree): the whole uint8 training set on the device, plus, for the
  class-stacked models (igan_v2 / igan_vn, docs/paper.md §1.2), a class index. A batch is an
  index draw and a gather inside the jitted step (`sample_real`): iteration t's examples come
  from fold_in(fold_in(rng, t), DATA), so resume is bit-exact (docs/design.md §1).
  Fashion-MNIST's training set is 47 MB; CelebA at 96×96 is ~5.6 GB.
- `StreamingData`: data larger than `config.data.max_resident_mb` (LSUN bedroom is ~3 M images,
  ~83 GB at 96×96) streams from the prepared shards through `igan_jax.data.stream_batches`
  (a background thread reads `prefetch` batches ahead). Iteration t takes samples
  [t·n_critic·B, (t+1)·n_critic·B) of the stream — each epoch a permutation that depends only on
  (config.seed, epoch), for the class-stacked models one stream per class — so the examples of
  iteration t are again a pure function of (seed, t) and resume stays bit-exact. Streaming draws
  without replacement per epoch; resident sampling draws with replacement.

The class-stacked models take `data.classes` (dataset labels) as their classes 0..N-1; images of
other labels are not used.

Over several devices (igan_jax/parallel.py) the resident set is replicated once onto every
device of the run's mesh, and each device gathers its own share of the global batch. Streamed,
each process reads only its own rows of each global batch (`parallel.process_rows`: the rows
its devices hold) from the same global stream, and puts them on its devices
(train.train_steps_streamed): n processes read 1/n of the data each, never the same example.
"""
from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from flax import struct

from igan_jax import data as data_lib
from igan_jax import parallel
from igan_jax.data.sampler import sample_batches, sample_per_class_batches

DATA_STREAM = 0  # fold_in stream id of the real-example draw (train.py's other ids are 1..3)


class ResidentData(struct.PyTreeNode):
  """The training set on the device. `order/starts/counts` (class k's images are
  images[order[starts[k]:starts[k]+counts[k]]]) are None for the single-class models."""
  images: jax.Array                 # (M, H, W, C) uint8
  order: jax.Array | None = None    # (M,) int32
  starts: jax.Array | None = None   # (N,) int32
  counts: jax.Array | None = None   # (N,) int32

  @property
  def num_classes(self) -> int:
    return 1 if self.starts is None else int(self.starts.shape[0])


def class_index(labels: np.ndarray, classes: Sequence[int], name: str = "the dataset"):
  """(order, starts, counts) on the host for the labels `classes` (model class k = classes[k]).

  order holds every image index: class 0's, class 1's, ..., then those of the other labels
  (never drawn). So its shape is the dataset's, whatever the classes: the training step
  compiles once per dataset size, not once per choice of `data.classes`."""
  labels = np.asarray(labels)
  members = [np.flatnonzero(labels == c) for c in classes]
  empty = [c for c, m in zip(classes, members) if len(m) == 0]
  if empty:
    present = sorted(set(np.unique(labels).tolist()))
    raise data_lib.DatasetError(
        f"{name} has no image of label(s) {empty} (labels present: {present}); "
        "set config.data.classes to labels the dataset has")
  counts = np.array([len(m) for m in members], np.int32)
  starts = (np.cumsum(counts) - counts).astype(np.int32)
  others = np.flatnonzero(~np.isin(labels, np.asarray(classes)))
  return np.concatenate(members + [others]).astype(np.int32), starts, counts


def model_classes(config) -> tuple[int, ...] | None:
  """The dataset labels that are the model's classes 0..N-1 (data.classes, or labels 0..N-1),
  or None for the one-class models. N is config.num_classes, resolved once by config.validate:
  the data side never asks the models."""
  n = config.num_classes
  if n == 1:
    return None
  return tuple(int(c) for c in (config.data.get("classes", ()) or range(n)))


def sample_real(data, key: jax.Array, n_critic: int, batch: int) -> jax.Array:
  """Real batches in [−1, 1]: (n_critic, batch, H, W, C), or (n_critic, N, batch, H, W, C) for
  the class-stacked models. Pure in `key`; runs inside the jitted step."""
  if isinstance(data, ResidentData):
    if data.starts is not None:
      return sample_per_class_batches(data.images, data.order, data.starts, data.counts, key,
                                      (n_critic, batch))
    data = data.images
  return sample_batches(data, key, (n_critic, batch))


def stream_mode(config) -> str:
  """"resident" or "stream" for this config (config.data.stream; "auto" decides by size)."""
  mode = config.data.get("stream", "auto")
  if mode != "auto":
    return mode
  size = data_lib.dataset_bytes(config.data.name, config.data.resolution,
                                split=config.data.split, data_dir=config.data.data_dir or None)
  return "stream" if size > config.data.get("max_resident_mb", 4096) * 2 ** 20 else "resident"


def load_training_data(config, expected_shape: tuple[int, int, int], mesh=None):
  """ResidentData (replicated over `mesh`, default parallel.mesh_for(config)) or StreamingData
  for `config`; raises DatasetError (one clear paragraph) when the data cannot be found, before
  anything is written anywhere."""
  classes = model_classes(config)
  mesh = parallel.mesh_for(config) if mesh is None else mesh
  if stream_mode(config) == "stream":
    return StreamingData(config, expected_shape, classes,
                         rows=parallel.process_rows(config.batch_size, mesh))
  images, labels = data_lib.load_images(config.data.name, config.data.split,
                                        config.data.data_dir or None, config.data.resolution)
  if images.shape[1:] != tuple(expected_shape):
    raise ValueError(f"dataset images have shape {images.shape[1:]}, expected {expected_shape}")
  if classes is None:
    return ResidentData(images=parallel.put_replicated(images, mesh))
  order, starts, counts = class_index(labels, classes, config.data.name)
  return ResidentData(*parallel.put_replicated((images, order, starts, counts), mesh))


class StreamingData:
  """Host-streamed real batches for data that does not fit on the device (module docstring).

  rows: [start, stop) of the global batch's B rows this process reads (default all): of
  iteration t's n_critic·B stream samples, rows start..stop-1 of each critic update's B."""

  def __init__(self, config, expected_shape, classes: tuple[int, ...] | None, prefetch: int = 4,
               rows: tuple[int, int] | None = None):
    self._config = config
    self.classes = classes
    self.per_iteration = config.n_critic * config.batch_size
    self.rows = (0, config.batch_size) if rows is None else tuple(rows)
    start, stop = self.rows
    self._keep = None if self.rows == (0, config.batch_size) else np.concatenate(
        [c * config.batch_size + np.arange(start, stop) for c in range(config.n_critic)])
    self.prefetch = prefetch
    shape = tuple(data_lib.image_shape(config.data.name, config.data.resolution))
    if shape != tuple(expected_shape):
      raise ValueError(f"dataset images have shape {shape}, expected {expected_shape}")
    # Prepares the data when missing and surfaces a missing dataset now, not mid-run.
    self.size = data_lib.dataset_size(config.data.name, config.data.split,
                                      config.data.data_dir or None, config.data.resolution)
    self._streams, self._step = None, None

  @property
  def num_classes(self) -> int:
    return 1 if self.classes is None else len(self.classes)

  def _open(self, step: int):
    self.close()
    c = self._config
    labels = [None] if self.classes is None else list(self.classes)
    self._streams = [
        data_lib.stream_batches(c.data.name, c.data.split, batch_size=self.per_iteration,
                                seed=c.seed, data_dir=c.data.data_dir or None,
                                resolution=c.data.resolution, prefetch=self.prefetch,
                                start_index=step * self.per_iteration, label=label,
                                keep=self._keep)
        for label in labels]
    self._step = step

  def batches(self, step: int, k: int) -> list[np.ndarray]:
    """uint8 real batches of iterations step .. step+k-1, each (n_critic, [N,] b, H, W, C):
    this process's b = stop - start rows of the global batch (all B in one process)."""
    if self._step != step:  # first call, a resume or a rollback: reposition the streams
      self._open(step)
    c = self._config
    b = self.rows[1] - self.rows[0]
    out = []
    for _ in range(k):
      per_class = [next(s)[0].reshape((c.n_critic, b) + s.image_shape)
                   for s in self._streams]
      out.append(per_class[0] if self.classes is None else np.stack(per_class, axis=1))
    self._step = step + k
    return out

  def close(self):
    for s in self._streams or ():
      s.close()
    self._streams, self._step = None, None
