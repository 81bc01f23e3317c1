"""MNIST and Fashion-MNIST: a whole TFDS split decoded once into a cached uint8 .npz.

`load` is what a training process calls for these datasets (kind "tfds").  It never imports
TensorFlow: it reads the prepared data through ``tfds.data_source(..., download=False)`` (pure
Python + array_record), and when the dataset is not prepared it runs the preparation in a
*subprocess* (`tfds_prepare.prepare_in_subprocess`).  The decoded images are cached once as
``<data_dir>/igan_jax_cache/<name>-<split>-<resolution>.npz`` (`core.cache_path`), because
decoding 60k PNGs through TFDS takes ~13 s and a cached array loads in well under a second.

Under ``tfds.testing.mock_data`` `load` reads TFDS's fake examples in-process and writes no
cache: the mock ignores ``data_dir``, so a cache written then would sit in a real data dir
holding random bytes that a later real run would load as if they were the dataset.

tensorflow_datasets is imported in `read_tfds` only: importing it takes ~0.4 s (measured,
`python -X importtime`) and a cached split needs no TFDS at all.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
import zipfile

import numpy as np
import PIL
from PIL import Image

from igan_jax.data import tfds_prepare
from igan_jax.data.core import (PREPARE_PROG, DatasetError, DatasetSpec, cache_path,
                                one_line, prepare_command, tfds_is_mocked)

# Bump when the cache layout or the meaning of a recipe field changes.
CACHE_FORMAT = 1
_READ_CHUNK = 8192  # examples decoded per __getitems__ call (bounds peak memory)


def load(s: DatasetSpec, split: str, data_dir: str, res: int, prepare_if_missing: bool = True,
         manual_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Images uint8 (N, res, res, C) and labels int32 (N,) of one split of `s`.

  `res` equal to the native size returns the images as stored; another size resizes every
  image once (see `resize`).  The result is cached under <data_dir>/igan_jax_cache/; a
  corrupt or stale cache is deleted and rebuilt.  When the dataset is not prepared and
  `prepare_if_missing`, preparation runs in a subprocess so that this process never imports
  TensorFlow.
  """
  if tfds_is_mocked():
    images, labels = read_tfds(s, split, data_dir, mocked=True)
    return resize(images, res), labels

  recipe = cache_recipe(s, split, res)
  path = cache_path(data_dir, s, split, res)
  cached = read_cache(path, recipe)
  if cached is not None:
    return cached

  if s.native_shape is not None and res != s.native_shape[0]:
    # Resize from the (cached) native arrays, so each resolution costs one
    # decode of the TFDS data at most.
    images, labels = load(s, split, data_dir, s.native_shape[0], prepare_if_missing,
                          manual_dir)
  else:
    if not tfds_prepare.is_prepared(s.name, data_dir):
      if not prepare_if_missing:
        raise DatasetError(
            f"Dataset {s.name} is not prepared in {data_dir}; run "
            f"`{prepare_command(s.name, data_dir)}` first.")
      tfds_prepare.prepare_in_subprocess(s.name, data_dir, manual_dir)
    images, labels = read_tfds(s, split, data_dir)
  images = resize(images, res)
  write_cache(path, images, labels, recipe)
  return images, labels


def read_tfds(s: DatasetSpec, split: str, data_dir: str, mocked: bool = False
              ) -> tuple[np.ndarray, np.ndarray]:
  """Decodes a whole split through tfds.data_source (no TensorFlow).

  Batched __getitems__ reads are what make the real read fast, but TFDS
  4.9's mock_data sets __getitems__ on its MagicMock as a plain attribute
  (MagicMock does not know that dunder), so the mock's own self is never
  passed and the call fails; under the mock we read one example at a time.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (~0.4 s; docstring)
  try:
    source = tfds.data_source(s.tfds_name, split=split, data_dir=data_dir,
                              download=False,
                              builder_kwargs={"file_format": "array_record"})
  except Exception as e:  # pylint: disable=broad-except
    raise DatasetError(
        f"Cannot read split {split!r} of {s.name} from {data_dir} "
        f"({type(e).__name__}: {one_line(str(e))}); "
        f"check the split name (e.g. 'train', 'test') or re-run "
        f"`python -m {PREPARE_PROG} --dataset={s.name} --data_dir={data_dir}`.") from e
  n = len(source)
  if n == 0:
    raise DatasetError(f"Split {split!r} of {s.name} in {data_dir} is empty.")
  images = labels = None
  for start in range(0, n, _READ_CHUNK):
    keys = list(range(start, min(n, start + _READ_CHUNK)))
    examples = [source[k] for k in keys] if mocked else source.__getitems__(keys)
    if images is None:
      first = np.asarray(examples[0]["image"])
      images = np.empty((n,) + first.shape, np.uint8)
      labels = np.empty((n,), np.int32)
    images[start:start + len(keys)] = np.stack([np.asarray(ex["image"]) for ex in examples])
    labels[start:start + len(keys)] = [int(ex["label"]) for ex in examples]
  if images.ndim == 3:  # tolerate (H, W) images: always return (N, H, W, C)
    images = images[..., None]
  return images, labels


def resize(images: np.ndarray, res: int) -> np.ndarray:
  """Resizes (N, H, W, C) uint8 square images to (N, res, res, C).

  Pillow's BICUBIC (a = -0.5) on each image, rounded and clipped to uint8 by
  Pillow.  Pillow widens the filter only when downscaling, so upsampling
  (28 -> 96) is plain bicubic interpolation with no antialiasing; the recipe
  stored in the cache records this.
  """
  n, h, w, c = images.shape
  if (h, w) == (res, res):
    return images
  if h != w:
    raise DatasetError(f"Resizing non-square images ({h}x{w}) needs a crop recipe; "
                       "not supported yet.")
  out = np.empty((n, res, res, c), np.uint8)
  for i in range(n):
    img = Image.fromarray(images[i, :, :, 0] if c == 1 else images[i])
    out[i] = np.asarray(img.resize((res, res), Image.Resampling.BICUBIC)).reshape(res, res, c)
  return out


# ----------------------------------------------------------------------------
# The .npz cache.


def cache_recipe(s: DatasetSpec, split: str, res: int) -> dict:
  """What the cached arrays are; a cache whose recipe differs is rebuilt."""
  native = s.native_shape[0] if s.native_shape else None
  if res == native:
    resize_text = "none"
  else:
    resize_text = ("PIL.Image.resize BICUBIC, per image, uint8 in/out; antialias "
                   + ("off (upsampling)" if native and res > native else "on (downsampling)"))
  return {"format": CACHE_FORMAT, "dataset": s.name, "tfds_name": s.tfds_name,
          "split": split, "resolution": res, "resize": resize_text}


def read_cache(path: str, recipe: dict) -> tuple[np.ndarray, np.ndarray] | None:
  """The cached (images, labels), or None (deleting the file) if absent or bad."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as z:
      stored = json.loads(str(z["recipe"]))
      images, labels = z["images"], z["labels"]
    res = recipe["resolution"]
    ok = (stored == recipe and images.dtype == np.uint8 and images.ndim == 4
          and images.shape[1:3] == (res, res) and labels.dtype == np.int32
          and labels.shape == images.shape[:1])
    problem = "does not match what was asked for"
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    ok, problem = False, f"is unreadable ({type(e).__name__}: {e})"
  if ok:
    return images, labels
  print(f"igan_jax.data: cache {path} {problem}; rebuilding it", file=sys.stderr)
  try:
    os.remove(path)
  except FileNotFoundError:
    pass
  return None


def write_cache(path: str, images: np.ndarray, labels: np.ndarray, recipe: dict) -> None:
  """Writes atomically (temp file + os.replace): readers see all or nothing."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  # Unique temp name in the same dir (os.replace must not cross filesystems);
  # open(..., "xb") rather than mkstemp so the file gets the umask's mode,
  # not 0600, and other users of a shared data dir can read it.
  tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-{uuid.uuid4().hex}.npz")
  try:
    with open(tmp, "xb") as f:
      # Provenance only (not compared on read): which Pillow resized.
      info = {"pillow": PIL.__version__, "count": int(len(labels))}
      np.savez(f, images=images, labels=labels, recipe=np.array(json.dumps(recipe)),
               info=np.array(json.dumps(info)))
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
