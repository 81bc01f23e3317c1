"""Host-side minibatch streaming for data that does not fit on the device.

`stream_batches` yields (images uint8 (B, H, W, C), labels int32 (B,)) numpy
batches, read by a background thread `prefetch` batches ahead from the
prepared shards on disk (positioned reads, so only the batches in flight are
in memory) or from memory (mnist/fashion_mnist, mock data).

Order: an endless sequence of samples, epoch after epoch; epoch e is a
permutation of the dataset (or of one class, `label=`) that depends only on
(seed, e): the argsort of e's block of raw 64-bit outputs of PCG64 seeded with
SeedSequence([seed, e]) (bit-generator streams are stable across numpy
versions, unlike Generator.permutation).  Batch b holds samples
[start_index + b*B, start_index + (b+1)*B): batches run across epoch
boundaries, nothing is dropped or repeated within an epoch.  So a stream
started at `start_index` = k*B yields exactly what a stream from 0 yields
from its k-th batch on: checkpoint `stream.position` and pass it back as
`start_index` to resume. `keep` reads only some positions of each batch (the
others are skipped, never read): each process of a multi-process run reads its
own rows of each global batch; the order and the positions stay the global
stream's.  Unlike `sampler.sample_batches` (i.i.d. draws with
replacement on device) this is sampling without replacement per epoch.

The thread stops when the stream is closed (`close()`, a `with` block, or
garbage collection of the stream); it never holds a reference to the stream.
An error in the thread (e.g. a damaged shard) is raised by `next()`.
"""

from __future__ import annotations

import queue
import threading
import weakref

import numpy as np

from igan_jax.data import datasets
from igan_jax.data.core import DatasetError

_PUT_TIMEOUT_S = 0.1


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The order of epoch `epoch`: a permutation of range(n), int64."""
  bits = np.random.PCG64(np.random.SeedSequence([seed, epoch])).random_raw(n)
  return np.argsort(bits, kind="stable")


class _Sampler:
  """Maps sample indices to dataset rows (and reads them) for one stream."""

  def __init__(self, parts, subset: np.ndarray | None, seed: int):
    self.parts = parts
    self.starts = np.concatenate([[0], np.cumsum([p.count for p in parts])])
    self.labels = np.concatenate([p.labels for p in parts])
    self.subset = subset
    self.n = len(subset) if subset is not None else int(self.starts[-1])
    self.seed = seed
    self.shape = parts[0].shape
    self._perms: dict[int, np.ndarray] = {}

  def _perm(self, epoch: int) -> np.ndarray:
    perm = self._perms.get(epoch)
    if perm is None:
      if len(self._perms) >= 2:
        self._perms.pop(min(self._perms))
      perm = self._perms[epoch] = epoch_permutation(self.seed, epoch, self.n)
    return perm

  def rows(self, start: int, size: int) -> np.ndarray:
    """Dataset rows of samples [start, start + size)."""
    idx = np.arange(start, start + size, dtype=np.int64)
    epochs, pos = np.divmod(idx, self.n)
    rows = np.empty(size, np.int64)
    for e in np.unique(epochs):
      m = epochs == e
      rows[m] = self._perm(int(e))[pos[m]]
    return self.subset[rows] if self.subset is not None else rows

  def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(rows),) + self.shape, np.uint8)
    part = np.searchsorted(self.starts, rows, side="right") - 1
    for k in np.unique(part):
      m = np.flatnonzero(part == k)
      local = rows[m] - self.starts[k]
      if len(m) == len(rows):
        self.parts[k].read_rows(local, images)
      else:
        buf = np.empty((len(m),) + self.shape, np.uint8)
        self.parts[k].read_rows(local, buf)
        images[m] = buf
    return images, self.labels[rows]

  def close(self):
    for p in self.parts:
      p.close()


def _produce(sampler: _Sampler, q: queue.Queue, stop: threading.Event, start: int,
             batch_size: int, keep: np.ndarray | None) -> None:
  """The prefetch thread: puts batches (or the error that stopped it) into q."""
  try:
    pos = start
    while not stop.is_set():
      rows = sampler.rows(pos, batch_size)
      item = sampler.read(rows if keep is None else rows[keep])
      pos += batch_size
      while not stop.is_set():
        try:
          q.put(item, timeout=_PUT_TIMEOUT_S)
          break
        except queue.Full:
          continue
  except BaseException as e:  # pylint: disable=broad-except  (handed to the consumer)
    while not stop.is_set():
      try:
        q.put(_Failure(e), timeout=_PUT_TIMEOUT_S)
        break
      except queue.Full:
        continue
  finally:
    sampler.close()


class _Failure:
  def __init__(self, error: BaseException):
    self.error = error


def _shutdown(stop: threading.Event, q: queue.Queue, thread: threading.Thread,
              join: bool) -> None:
  stop.set()
  try:  # unblock a producer waiting on a full queue
    while True:
      q.get_nowait()
  except queue.Empty:
    pass
  if join and thread.is_alive() and thread is not threading.current_thread():
    thread.join(timeout=10)


class BatchStream:
  """Iterator of (images uint8 (B, H, W, C), labels int32 (B,)); see module docstring.

  Attributes:
    position: index of the first sample of the next batch (pass it as
      `start_index` to resume).
    dataset_size: samples per epoch (the class's size with `label=`).
    image_shape: (H, W, C).
  """

  def __init__(self, sampler: _Sampler, batch_size: int, start_index: int, prefetch: int,
               keep: np.ndarray | None = None):
    self.batch_size = batch_size
    self.position = start_index
    self.dataset_size = sampler.n
    self.image_shape = sampler.shape
    self._queue: queue.Queue = queue.Queue(maxsize=prefetch)
    self._stop = threading.Event()
    self._thread = threading.Thread(
        target=_produce, args=(sampler, self._queue, self._stop, start_index, batch_size, keep),
        name="igan_jax-stream_batches", daemon=True)
    self._thread.start()
    self._closed = False
    self._finalizer = weakref.finalize(self, _shutdown, self._stop, self._queue,
                                       self._thread, False)

  @property
  def epoch(self) -> int:
    """Epoch of the next batch's first sample."""
    return self.position // self.dataset_size

  def __iter__(self):
    return self

  def __next__(self) -> tuple[np.ndarray, np.ndarray]:
    if self._closed:
      raise StopIteration
    while True:
      try:
        item = self._queue.get(timeout=1.0)
        break
      except queue.Empty:
        if not self._thread.is_alive():
          raise DatasetError("The stream_batches thread ended unexpectedly.") from None
    if isinstance(item, _Failure):
      self.close()
      raise item.error
    self.position += self.batch_size
    return item

  def close(self) -> None:
    """Stops and joins the prefetch thread; further next() raises StopIteration."""
    self._closed = True
    self._finalizer.detach()
    _shutdown(self._stop, self._queue, self._thread, True)

  @property
  def thread_alive(self) -> bool:
    return self._thread.is_alive()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def stream_batches(name: str, split: str = "train", batch_size: int = 64, seed: int = 0,
                   data_dir: str | None = None, resolution: int | None = None,
                   prefetch: int = 2, *, start_index: int = 0, label: int | None = None,
                   label_attribute: str | None = None, manual_dir: str | None = None,
                   prepare_if_missing: bool = True, workers: int | None = None,
                   keep=None) -> BatchStream:
  """An endless, deterministic, resumable stream of minibatches (module docstring).

  Args:
    name, split, data_dir, resolution, manual_dir, label_attribute,
      prepare_if_missing: as for `load_images` (resolution None: native for
      mnist/fashion_mnist, 96 for the others); the dataset is prepared once
      when missing (`workers` threads).
    batch_size: images per batch.
    seed: the shuffling seed (with the epoch number).
    prefetch: batches read ahead by the background thread (>= 1).
    start_index: sample index of the first batch's first sample (resume).
    label: only images of this class (e.g. for IGAN_V2's per-class
      discriminators: one stream per class); None = all.
    keep: positions in [0, batch_size) of each batch to read, in this order
      (a process's own rows); None = all. `position` still advances by
      batch_size a batch.

  Returns:
    A BatchStream; close it (or use `with`) to stop its thread.
  """
  for arg, value, low in (("batch_size", batch_size, 1), ("prefetch", prefetch, 1),
                          ("start_index", start_index, 0)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
      raise DatasetError(f"{arg} must be an int >= {low}, got {value!r}.")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise DatasetError(f"seed must be a non-negative int, got {seed!r}.")
  if keep is not None:
    keep = np.asarray(keep, np.int64)
    if keep.ndim != 1 or not len(keep) or keep.min() < 0 or keep.max() >= batch_size:
      raise DatasetError(f"keep must be positions in [0, {batch_size}), got {keep!r}.")
  parts, _ = datasets.open_parts(name, split, data_dir, resolution,
                                 prepare_if_missing=prepare_if_missing, manual_dir=manual_dir,
                                 label_attribute=label_attribute, workers=workers)
  try:
    subset = None
    if label is not None:
      labels = np.concatenate([p.labels for p in parts])
      subset = np.flatnonzero(labels == label)
      if not len(subset):
        raise DatasetError(f"{name} ({split}) has no image of class {label!r} "
                           f"(classes present: {sorted(set(labels.tolist()))}).")
    sampler = _Sampler(parts, subset, int(seed))
  except BaseException:
    for p in parts:
      p.close()
    raise
  return BatchStream(sampler, int(batch_size), int(start_index), int(prefetch), keep)


def sample_images(name: str, n: int, split: str = "train", seed: int = 0,
                  data_dir: str | None = None, resolution: int | None = None, *,
                  label: int | None = None, label_attribute: str | None = None,
                  manual_dir: str | None = None, prepare_if_missing: bool = True,
                  workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """`n` distinct images (and labels) without loading the whole dataset.

  They are the first `n` samples of epoch 0 of `stream_batches(name, split,
  seed=seed, label=label)`: deterministic for a seed, read straight from the
  prepared shards (e.g. 10,000 real LSUN bedrooms for FID, docs/paper.md §3).
  """
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
    raise DatasetError(f"n must be a positive int, got {n!r}.")
  parts, _ = datasets.open_parts(name, split, data_dir, resolution,
                                 prepare_if_missing=prepare_if_missing, manual_dir=manual_dir,
                                 label_attribute=label_attribute, workers=workers)
  sampler = None
  try:
    labels = np.concatenate([p.labels for p in parts])
    subset = None if label is None else np.flatnonzero(labels == label)
    sampler = _Sampler(parts, subset, int(seed))
    if n > sampler.n:
      raise DatasetError(f"{name} ({split}) has {sampler.n} images"
                         f"{'' if label is None else f' of class {label}'}, fewer than "
                         f"the {n} asked for.")
    return sampler.read(sampler.rows(0, int(n)))
  finally:
    for p in parts:
      p.close()
