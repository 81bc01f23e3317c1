"""Prepared image datasets: processed once into chunked .npy shards plus a manifest.

CelebA (202,599 images), LSUN (3 M bedrooms) and image folders are decoded,
cropped and resized once (`igan_jax.data.imageproc`) into

    <data_dir>/igan_jax_cache/<tag>-<split>-<res>/
        manifest.json     what is there and how it was made (below)
        images-00000.npy  uint8 (n_0, res, res, 3), plain .npy: np.load(..., mmap_mode="r") works
        images-00001.npy  ...  (about 128 MiB each: 4854 images at 96x96)
        labels.npy        int32 (N,)  the default class of each image (0 where there is none)
        attributes.npy    bool (N, A) CelebA's 40 binary attributes (names in the manifest)
        ids.npy           bytes (N,)  LSUN keys / folder-relative paths (provenance)

manifest.json: {"format", "recipe" (compared on every open: a cache made
with another recipe is deleted and rebuilt), "count", "shape", "dtype",
"images_per_shard", "shards": [{"file", "count", "bytes", "sha256"}, ...],
"labels": {"file", "meaning", "num_classes"}, "attributes": {"file", "names"}
or null, "ids": {"file"} or null, "skipped": {"count", "items": [{"id",
"reason"}, ... at most 1000]}, "upsampled" (images whose crop was smaller than
res), "source_items" (items read from the source), "info" (Pillow/numpy
versions, seconds, date; not compared)}.

Building writes into `<dir>.partial/` one shard at a time (shard k holds the
usable images among source items [k*P, (k+1)*P)), records progress after each
shard, and renames the directory into place when complete: readers see a
complete dataset or none, and an interrupted build (hours for LSUN) resumes at
the first unfinished shard.  A flock serialises builders of one dataset.

Reading needs only numpy: `Prepared.load_all` reads every shard into one array
(CelebA at 96x96 is 5.6 GB), `Prepared.read_rows` gathers arbitrary rows with
positioned reads (os.preadv, which releases the GIL) for streaming.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import shutil
import sys
import time
import uuid

import numpy as np
import PIL

from igan_jax.data import imageproc
from igan_jax.data.core import DatasetError, DatasetSpec, file_lock

FORMAT = 2  # bump when the layout or the meaning of a recipe field changes
SHARD_BYTES = 128 << 20
MAX_SKIPPED_LISTED = 1000
_PROGRESS_EVERY_S = 15.0

# The manifest's "labels" entry of a dataset of one class (LSUN, folders).
ONE_CLASS_LABELS = {"meaning": "0 for every image (one class)", "num_classes": 1}


def images_per_shard(resolution: int) -> int:
  return max(1, SHARD_BYTES // (resolution * resolution * 3))


def recipe_for(s: DatasetSpec, split: str, res: int, source: dict) -> dict:
  """The recipe of `split` of `s` at `res`: the format, where the images come from (`source`)
  and how they are processed (`imageproc.recipe_dict`); compared on every `Prepared.open`."""
  out = {"format": FORMAT, "dataset": s.name, "split": split}
  out.update(source)
  out.update(imageproc.recipe_dict(s.crop, res, exif_transpose=s.kind == "folder"))
  return out


def default_workers() -> int:
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except AttributeError:  # not Linux
    return max(1, os.cpu_count() or 1)


class Item:
  """One source item: an id, the image, its label and attributes.

  The image (`payload`) is encoded bytes, a decoded array, the exception that
  prevented reading it, or a callable returning bytes (called in a worker
  thread, so files are read in parallel and never all held at once).
  """

  __slots__ = ("id", "payload", "label", "attributes")

  def __init__(self, id_: bytes, payload, label: int = 0, attributes=None):
    self.id = id_
    self.payload = payload
    self.label = label
    self.attributes = attributes


class Chunk:
  """Processed items of one range of the source."""

  def __init__(self, res: int, n_attr: int):
    self.images: list[np.ndarray] = []
    self.labels: list[int] = []
    self.attributes: list[np.ndarray] = []
    self.ids: list[bytes] = []
    self.skipped: list[dict] = []
    self.upsampled = 0
    self.res = res
    self.n_attr = n_attr

  def arrays(self):
    n, r = len(self.images), self.res
    images = np.stack(self.images) if n else np.empty((0, r, r, 3), np.uint8)
    labels = np.asarray(self.labels, np.int32).reshape(n)
    attrs = (np.stack(self.attributes).astype(bool) if n and self.n_attr
             else np.zeros((n, self.n_attr), bool))
    ids = np.asarray(self.ids, dtype=bytes) if n else np.empty((0,), "S1")
    return images, labels, attrs, ids


def _process_one(item: Item, crop: str, res: int, exif: bool):
  payload = item.payload
  try:
    if callable(payload):
      payload = payload()
    if isinstance(payload, BaseException):
      raise payload
    if isinstance(payload, np.ndarray):
      return imageproc.process_array(payload, crop, res)
    return imageproc.process_encoded(bytes(payload), crop, res, exif_transpose=exif)
  except MemoryError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (any undecodable input is skipped)
    return e


def process_range(source, start: int, stop: int, crop: str, res: int, exif: bool,
                  pool: concurrent.futures.Executor | None) -> Chunk:
  """Reads source items [start, stop) and applies the recipe (in `pool`'s threads)."""
  items = source.items(start, stop)
  fn = lambda it: _process_one(it, crop, res, exif)  # noqa: E731
  results = list(pool.map(fn, items)) if pool is not None else [fn(it) for it in items]
  chunk = Chunk(res, len(source.attribute_names))
  for item, result in zip(items, results):
    if isinstance(result, BaseException):
      reason = " ".join(f"{type(result).__name__}: {result}".split())[:300]
      chunk.skipped.append({"id": item.id.decode("utf-8", "replace"), "reason": reason})
      continue
    image, upsampled = result
    chunk.images.append(image)
    chunk.labels.append(int(item.label))
    if chunk.n_attr:
      chunk.attributes.append(np.asarray(item.attributes, bool))
    chunk.ids.append(item.id)
    chunk.upsampled += bool(upsampled)
  return chunk


def process_all(source, crop: str, res: int, exif: bool = False, workers: int | None = None
                ) -> tuple[Chunk, tuple]:
  """Everything in memory (used under TFDS's mock data, where nothing is cached)."""
  with concurrent.futures.ThreadPoolExecutor(workers or default_workers()) as pool:
    chunk = process_range(source, 0, source.count, crop, res, exif, pool)
  return chunk, chunk.arrays()


# ----------------------------------------------------------------------------
# Writing.


class _HashingFile:
  """File wrapper for np.lib.format.write_array that hashes what it writes."""

  def __init__(self, f):
    self.f, self.h, self.n = f, hashlib.sha256(), 0

  def write(self, b):
    b = memoryview(b).cast("B")
    self.h.update(b)
    self.n += len(b)
    return self.f.write(b)


def _atomic_npy(path: str, array: np.ndarray) -> tuple[int, str]:
  """Writes `array` as .npy via a temp file + os.replace; returns (bytes, sha256)."""
  tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{uuid.uuid4().hex}.npy")
  try:
    with open(tmp, "xb") as f:
      hf = _HashingFile(f)
      np.lib.format.write_array(hf, np.ascontiguousarray(array), allow_pickle=False)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return hf.n, hf.h.hexdigest()


def _atomic_json(path: str, obj) -> None:
  tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{uuid.uuid4().hex}.json")
  try:
    with open(tmp, "x") as f:
      json.dump(obj, f, indent=1)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def build(path: str, recipe: dict, source, *, name: str, label_info: dict,
          empty_message: str, workers: int | None = None) -> "Prepared":
  """Builds the prepared dataset at `path` from `source` unless a valid one is there.

  `source` has `count` (items), `items(start, stop) -> list[Item]`,
  `attribute_names` (tuple, may be empty) and `exif_transpose` (bool).
  Raises DatasetError(empty_message + the skip summary) when no image is usable.
  """
  res = recipe["resolution"]
  crop = recipe["crop"]
  cache = os.path.dirname(path)
  os.makedirs(cache, exist_ok=True)
  with file_lock(os.path.join(cache, f".build-{os.path.basename(path)}.lock")):
    existing = Prepared.open(path, recipe)
    if existing is not None:
      return existing
    per = images_per_shard(res)
    n_shards = -(-source.count // per)
    partial = path + ".partial"
    progress_path = os.path.join(partial, "progress.json")
    progress = {"recipe": recipe, "source_items": source.count, "per_shard": per, "done": 0}
    done = 0
    if os.path.isdir(partial):
      try:
        with open(progress_path) as f:
          old = json.load(f)
        if {k: old.get(k) for k in ("recipe", "source_items", "per_shard")} == \
                {k: progress[k] for k in ("recipe", "source_items", "per_shard")}:
          done = int(old["done"])
      except (OSError, ValueError, KeyError, TypeError):
        done = 0
      if done:
        print(f"igan_jax.data: resuming the preparation of {name} at shard "
              f"{done}/{n_shards} in {partial}", file=sys.stderr, flush=True)
      else:
        shutil.rmtree(partial)
    os.makedirs(partial, exist_ok=True)
    needed = (source.count - done * per) * res * res * 3
    free = shutil.disk_usage(partial).free
    if needed > free:
      raise DatasetError(
          f"Preparing {name} at {res}x{res} needs up to {needed / 1e9:.1f} GB in {cache}, "
          f"which has {free / 1e9:.1f} GB free; free some space or use another data_dir.")
    exif = bool(getattr(source, "exif_transpose", False))
    start_time = last_print = time.time()
    workers = workers or default_workers()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      for k in range(done, n_shards):
        chunk = process_range(source, k * per, min(source.count, (k + 1) * per),
                              crop, res, exif, pool)
        images, labels, attrs, ids = chunk.arrays()
        nbytes, sha = _atomic_npy(os.path.join(partial, f"images-{k:05d}.npy"), images)
        meta = {"count": len(labels), "bytes": nbytes, "sha256": sha,
                "skipped": chunk.skipped, "upsampled": chunk.upsampled}
        tmp = os.path.join(partial, f".tmp-{uuid.uuid4().hex}.npz")
        with open(tmp, "xb") as f:
          np.savez(f, labels=labels, attributes=attrs, ids=ids,
                   meta=np.array(json.dumps(meta)))
        os.replace(tmp, os.path.join(partial, f"meta-{k:05d}.npz"))
        progress["done"] = k + 1
        _atomic_json(progress_path, progress)
        now = time.time()
        if n_shards > 1 and now - last_print > _PROGRESS_EVERY_S:
          last_print = now
          eta = (now - start_time) / (k + 1 - done) * (n_shards - k - 1)
          print(f"igan_jax.data: preparing {name}: shard {k + 1}/{n_shards} "
                f"({(k + 1) * per} of {source.count} items), about {eta / 60:.0f} "
                f"min left", file=sys.stderr, flush=True)
    manifest = _finalize(partial, recipe, source, per, n_shards, label_info,
                         empty_message, start_time)
    if os.path.exists(path):
      shutil.rmtree(path)
    os.rename(partial, path)
    s = manifest["skipped"]
    print(f"igan_jax.data: prepared {name} ({manifest['count']} images at {res}x{res}, "
          f"{s['count']} skipped, {manifest['upsampled']} upsampled) in {path}",
          file=sys.stderr, flush=True)
    if s["count"]:
      shown = "; ".join(f"{x['id']}: {x['reason']}" for x in s["items"][:5])
      print(f"igan_jax.data: skipped {s['count']} unreadable item(s) of {name}, e.g. "
            f"{shown} (all listed in {os.path.join(path, 'manifest.json')})",
            file=sys.stderr, flush=True)
    prepared = Prepared.open(path, recipe)
    if prepared is None:
      raise DatasetError(f"The dataset just prepared in {path} does not read back; "
                         f"delete {path} and try again.")
    return prepared


def _finalize(partial: str, recipe: dict, source, per: int, n_shards: int, label_info: dict,
              empty_message: str, start_time: float) -> dict:
  labels, attrs, ids, shards, skipped = [], [], [], [], []
  skipped_count = upsampled = 0
  for k in range(n_shards):
    with np.load(os.path.join(partial, f"meta-{k:05d}.npz"), allow_pickle=False) as z:
      meta = json.loads(str(z["meta"]))
      labels.append(z["labels"])
      attrs.append(z["attributes"])
      ids.append(z["ids"])
    shards.append({"file": f"images-{k:05d}.npy", "count": meta["count"],
                   "bytes": meta["bytes"], "sha256": meta["sha256"]})
    skipped_count += len(meta["skipped"])
    skipped.extend(meta["skipped"][:max(0, MAX_SKIPPED_LISTED - len(skipped))])
    upsampled += meta["upsampled"]
  count = sum(s["count"] for s in shards)
  if count == 0:
    shutil.rmtree(partial)
    listed = "; ".join(f"{x['id']}: {x['reason']}" for x in skipped[:5])
    raise DatasetError(empty_message + (f" ({skipped_count} item(s) could not be read, "
                                        f"e.g. {listed})" if skipped_count else ""))
  # Drop empty shards (every item skipped) so that readers never see them.
  keep = [s for s in shards if s["count"]]
  for s in shards:
    if not s["count"]:
      os.unlink(os.path.join(partial, s["file"]))
  labels = np.concatenate(labels).astype(np.int32)
  _atomic_npy(os.path.join(partial, "labels.npy"), labels)
  attr_names = list(getattr(source, "attribute_names", ()))
  if attr_names:
    _atomic_npy(os.path.join(partial, "attributes.npy"), np.concatenate(attrs))
  all_ids = [i for chunk in ids for i in chunk.tolist()]
  has_ids = any(all_ids)
  if has_ids:
    _atomic_npy(os.path.join(partial, "ids.npy"), np.asarray(all_ids, dtype=bytes))
  res = recipe["resolution"]
  manifest = {
      "format": FORMAT,
      "recipe": recipe,
      "count": count,
      "shape": [res, res, 3],
      "dtype": "uint8",
      "images_per_shard": per,
      "shards": keep,
      "labels": dict(label_info, file="labels.npy"),
      "attributes": {"file": "attributes.npy", "names": attr_names} if attr_names else None,
      "ids": {"file": "ids.npy"} if has_ids else None,
      "skipped": {"count": skipped_count, "items": skipped},
      "upsampled": upsampled,
      "source_items": source.count,
      "info": {"pillow": PIL.__version__, "numpy": np.__version__,
               "seconds": round(time.time() - start_time, 1),
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
  }
  _atomic_json(os.path.join(partial, "manifest.json"), manifest)
  for k in range(n_shards):
    os.unlink(os.path.join(partial, f"meta-{k:05d}.npz"))
  os.unlink(os.path.join(partial, "progress.json"))
  return manifest


# ----------------------------------------------------------------------------
# Reading (numpy only).


def _npy_layout(path: str) -> tuple[int, tuple, np.dtype]:
  """(data offset, shape, dtype) of a C-order .npy file."""
  with open(path, "rb") as f:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
      shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if fortran:
      raise ValueError("Fortran-order shard")
    return f.tell(), shape, dtype


class Prepared:
  """A prepared dataset on disk; `open` validates it against a recipe."""

  def __init__(self, path: str, manifest: dict, layouts: list[int]):
    self.path = path
    self.manifest = manifest
    self.count = int(manifest["count"])
    self.shape = tuple(manifest["shape"])
    self.row_bytes = int(np.prod(self.shape))
    self.files = [os.path.join(path, s["file"]) for s in manifest["shards"]]
    self.offsets = layouts
    counts = np.array([s["count"] for s in manifest["shards"]], np.int64)
    self.starts = np.concatenate([[0], np.cumsum(counts)])
    self.labels = np.load(os.path.join(path, manifest["labels"]["file"]), allow_pickle=False)
    self._fds: dict[int, int] = {}

  @classmethod
  def open(cls, path: str, recipe: dict) -> "Prepared | None":
    """The prepared dataset at `path`, or None (deleting it) if absent, stale or broken."""
    mpath = os.path.join(path, "manifest.json")
    if not os.path.exists(mpath):
      if os.path.isdir(path):  # a directory without a manifest is not ours to trust
        shutil.rmtree(path)
      return None
    problem = None
    try:
      with open(mpath) as f:
        manifest = json.load(f)
      if manifest.get("format") != FORMAT or manifest.get("recipe") != recipe:
        problem = "was made with another recipe or format"
      else:
        layouts = []
        shape = tuple(manifest["shape"])
        for s in manifest["shards"]:
          offset, sshape, dtype = _npy_layout(os.path.join(path, s["file"]))
          size = os.path.getsize(os.path.join(path, s["file"]))
          if (sshape != (s["count"],) + shape or dtype != np.uint8
                  or size != offset + s["count"] * int(np.prod(shape))):
            problem = f"has a damaged shard {s['file']}"
            break
          layouts.append(offset)
        if problem is None:
          prepared = cls(path, manifest, layouts)
          if prepared.labels.shape != (prepared.count,) or \
                  prepared.starts[-1] != prepared.count:
            problem = "has labels that do not match its images"
          else:
            return prepared
    except (OSError, ValueError, KeyError, TypeError) as e:
      problem = f"is unreadable ({type(e).__name__}: {e})"
    print(f"igan_jax.data: prepared dataset {path} {problem}; rebuilding it",
          file=sys.stderr, flush=True)
    shutil.rmtree(path, ignore_errors=True)
    return None

  @property
  def attribute_names(self) -> tuple[str, ...]:
    a = self.manifest.get("attributes")
    return tuple(a["names"]) if a else ()

  def attributes(self) -> np.ndarray:
    a = self.manifest.get("attributes")
    if not a:
      raise DatasetError(f"{self.path} has no attributes.")
    return np.load(os.path.join(self.path, a["file"]), allow_pickle=False)

  def ids(self) -> np.ndarray | None:
    a = self.manifest.get("ids")
    return np.load(os.path.join(self.path, a["file"]), allow_pickle=False) if a else None

  def load_all(self) -> np.ndarray:
    """All images in one (N, H, W, C) uint8 array."""
    out = np.empty((self.count,) + self.shape, np.uint8)
    flat = out.reshape(-1)
    for k, path in enumerate(self.files):
      lo, hi = int(self.starts[k]) * self.row_bytes, int(self.starts[k + 1]) * self.row_bytes
      with open(path, "rb") as f:
        f.seek(self.offsets[k])
        view = memoryview(flat[lo:hi])
        got = 0
        while got < hi - lo:
          n = f.readinto(view[got:])
          if not n:
            raise DatasetError(f"{path} is truncated; delete {self.path} and "
                               f"prepare it again.")
          got += n
    return out

  def _fd(self, k: int) -> int:
    fd = self._fds.get(k)
    if fd is None:
      if len(self._fds) >= 64:
        os.close(self._fds.pop(next(iter(self._fds))))
      fd = self._fds[k] = os.open(self.files[k], os.O_RDONLY)
    return fd

  def read_rows(self, rows: np.ndarray, out: np.ndarray) -> None:
    """out[j] = image rows[j] for j in range(len(rows)); out is C-contiguous uint8."""
    rows = np.asarray(rows, np.int64)
    shard = np.searchsorted(self.starts, rows, side="right") - 1
    order = np.lexsort((rows, shard))  # read each shard front to back
    for j in order:
      k = int(shard[j])
      offset = self.offsets[k] + (int(rows[j]) - int(self.starts[k])) * self.row_bytes
      n = os.preadv(self._fd(k), [memoryview(out[j]).cast("B")], offset)
      if n != self.row_bytes:
        raise DatasetError(f"Short read from {self.files[k]}; delete {self.path} and "
                           f"prepare it again.")

  def close(self) -> None:
    for fd in self._fds.values():
      os.close(fd)
    self._fds.clear()
