"""The dataset functions, and the one place that picks a backend for a dataset name.

Every public function takes a dataset name (`igan_jax.data.core`: mnist, fashion_mnist,
celeb_a, lsun/<category>, folder:/abs/path, A+B), splits it into its parts (`core.parts`) and
hands each part to the backend of its kind:

* "tfds" (mnist, fashion_mnist): `tfds_arrays`, a whole split cached as one uint8 .npz;
* "tfds_images" (celeb_a): `tfds_images`, TFDS's array_record cropped and resized once into
  the .npy shards of `prepared`;
* "lsun": `lsun`, the original LMDB archives into the same shards;
* "folder": `folder`, the files of a folder into the same shards;
* any TFDS kind under ``tfds.testing.mock_data``: `tfds_images.load_mocked`, in memory.

Two phases with different dependencies:

* `prepare` downloads (or takes from a manual dir) and converts a TFDS dataset to TFDS's
  array_record format (`tfds_prepare`; TFDS's builders import TensorFlow for this), or checks
  that the archives or files of an LSUN or folder dataset are there.  It is a no-op under the
  mock, like TFDS's own ``download_and_prepare``.
* `load_images`, `open_parts` (and through it `igan_jax.data.stream`) are what a training
  process calls.  They never import TensorFlow: an unprepared TFDS dataset is prepared in a
  *subprocess* (``python -m igan_jax.data.prepare``).

There is no fallback to fake data: a dataset that cannot be found raises DatasetError with
one paragraph that says what to do.  Data that does not fit in memory streams from the
prepared shards through `igan_jax.data.stream.stream_batches`.
"""

from __future__ import annotations

import json
import os

import numpy as np

from igan_jax.data import folder, lsun, prepared, tfds_arrays, tfds_images, tfds_prepare
from igan_jax.data.core import (CELEBA_ATTRIBUTES, DatasetError, DatasetSpec, cache_path,
                                lsun_archive_name, lsun_category, parts, prepared_path,
                                resolve_data_dir, resolve_manual_dir, resolve_resolution, spec,
                                tfds_is_mocked)


class Part:
  """One dataset of a name: its images (in memory or prepared on disk) and labels."""

  def __init__(self, s: DatasetSpec, labels: np.ndarray, *,
               images: np.ndarray | None = None,
               prepared_data: prepared.Prepared | None = None,
               attributes: np.ndarray | None = None, attribute_names=()):
    self.spec = s
    self.labels = np.asarray(labels, np.int32)
    self.images = images
    self.prepared = prepared_data
    self._attributes = attributes
    self.attribute_names = tuple(attribute_names)
    self.count = len(self.labels)
    self.shape = tuple(images.shape[1:]) if images is not None else prepared_data.shape

  def attributes(self) -> np.ndarray:
    if self._attributes is not None:
      return self._attributes
    return self.prepared.attributes()

  def load_all(self) -> np.ndarray:
    return self.images if self.images is not None else self.prepared.load_all()

  def read_rows(self, rows: np.ndarray, out: np.ndarray) -> None:
    if self.images is not None:
      out[...] = self.images[rows]
    else:
      self.prepared.read_rows(rows, out)

  def close(self) -> None:
    if self.prepared is not None:
      self.prepared.close()


# ----------------------------------------------------------------------------
# Names, shapes, classes (no data needed).


def image_shape(name: str, resolution: int | None = None) -> tuple[int, int, int]:
  """(H, W, C) of the images `load_images(name, resolution=...)` returns."""
  specs = parts(name)
  res = {resolve_resolution(s, resolution) for s in specs}
  if len(res) != 1:
    raise DatasetError(f"{name!r} combines datasets of different native resolutions; "
                       f"pass resolution=.")
  r = res.pop()
  return (r, r, specs[0].channels if specs[0].kind != "tfds" else specs[0].native_shape[2])


def num_classes(name: str, label_attribute: str | None = None) -> int:
  """Number of label classes: 10 (MNIST, Fashion-MNIST), 2 (CelebA: an attribute
  off/on), 1 (one LSUN category, a folder), the number of parts of A+B."""
  specs = parts(name)
  if label_attribute is not None:
    _check_label_attribute(specs, label_attribute)
  return len(specs) if len(specs) > 1 else specs[0].num_classes


def _check_label_attribute(specs: list[DatasetSpec], label_attribute: str) -> None:
  if len(specs) != 1 or specs[0].name != "celeb_a":
    raise DatasetError(f"label_attribute applies to celeb_a only (got it for "
                       f"{'+'.join(s.name for s in specs)}).")
  if label_attribute not in CELEBA_ATTRIBUTES:
    raise DatasetError(f"Unknown CelebA attribute {label_attribute!r}; one of: "
                       f"{', '.join(CELEBA_ATTRIBUTES)}.")


def _check_split(s: DatasetSpec, split: str) -> None:
  if not isinstance(split, str) or not split:
    raise DatasetError(f"split must be a non-empty string, got {split!r}.")
  if s.kind == "folder" and split != "train":
    raise DatasetError(f"A folder dataset has one split, 'train' (all its images); "
                       f"got {split!r}.")
  if s.kind == "lsun":
    lsun_archive_name(lsun_category(s), split)  # raises for other splits


def _check_lsun_archives(name: str, specs: list[DatasetSpec], split: str, data_dir: str,
                         res: int, manual_dir: str | None) -> None:
  """One DatasetError naming every LSUN archive still needed and missing."""
  lsun_specs = [s for s in specs if s.kind == "lsun"]
  if lsun_specs and not tfds_is_mocked():
    lsun.check_missing_archives(name, lsun_specs, split, data_dir, res,
                                resolve_manual_dir(manual_dir, data_dir))


# ----------------------------------------------------------------------------
# Preparing.


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None,
            *, debian_dir: str | None = None) -> None:
  """Downloads/converts TFDS dataset `name` into `data_dir` as array_record, once.

  Idempotent: returns at once when already prepared (`tfds_prepare.prepare`).  For
  fashion_mnist with the four source files not all in `manual_dir` (default
  <data_dir>/downloads/manual), they are restored from Debian's dataset-fashion-mnist
  package when its directory exists (`debian_dir`, else $IGAN_FASHION_MNIST_DEBIAN_DIR, else
  /usr/share/datasets/fashion-mnist).  LSUN and folder datasets have nothing to convert
  before their images are prepared (`prepare_images`): this checks that their sources are
  there.  Raises DatasetError (with the fix) when the files can be neither found nor
  downloaded, or do not match TFDS's registered checksums.
  """
  s = spec(name)
  if tfds_is_mocked():
    return
  data_dir = resolve_data_dir(data_dir)
  if s.kind == "lsun":
    lsun.check_sources(s, resolve_manual_dir(manual_dir, data_dir))
  elif s.kind == "folder":
    folder.check_sources(s)
  else:
    tfds_prepare.prepare(s, data_dir, resolve_manual_dir(manual_dir, data_dir), debian_dir)


def prepare_one(s: DatasetSpec, split: str, data_dir: str, res: int, *,
                prepare_if_missing: bool = True, manual_dir: str | None = None,
                workers: int | None = None) -> prepared.Prepared:
  """The prepared dataset of one non-mnist dataset, built when missing."""
  if s.kind == "folder":
    return folder.prepare_split(s, split, data_dir, res, prepare_if_missing=prepare_if_missing,
                                workers=workers)
  manual_dir = resolve_manual_dir(manual_dir, data_dir)
  if s.kind == "lsun":
    return lsun.prepare_split(s, split, data_dir, res, manual_dir=manual_dir,
                              prepare_if_missing=prepare_if_missing, workers=workers)
  return tfds_images.prepare_split(s, split, data_dir, res, manual_dir=manual_dir,
                                   prepare_if_missing=prepare_if_missing, workers=workers)


def prepare_images(name: str, split: str = "train", data_dir: str | None = None,
                   resolution: int | None = None, *, manual_dir: str | None = None,
                   workers: int | None = None) -> list[str]:
  """Prepares `name` once (every part of A+B); returns where the data is.

  For mnist/fashion_mnist that is the .npz cache; for the others the
  prepared directory (with its manifest.json).
  """
  data_dir = resolve_data_dir(data_dir)
  res = image_shape(name, resolution)[0]
  specs = parts(name)
  for s in specs:
    _check_split(s, split)
  _check_lsun_archives(name, specs, split, data_dir, res, manual_dir)
  out = []
  for s in specs:
    if s.kind == "tfds":
      tfds_arrays.load(s, split, data_dir, res)
      out.append(cache_path(data_dir, s, split, res))
    else:
      prepare_one(s, split, data_dir, res, manual_dir=manual_dir, workers=workers).close()
      out.append(prepared_path(data_dir, s, split, res))
  return out


# ----------------------------------------------------------------------------
# Opening the parts of a name.


def open_parts(name: str, split: str = "train", data_dir: str | None = None,
               resolution: int | None = None, *, prepare_if_missing: bool = True,
               manual_dir: str | None = None, label_attribute: str | None = None,
               workers: int | None = None) -> tuple[list[Part], int]:
  """([Part per dataset of `name`], resolution); builds prepared data when missing.

  Labels: mnist-likes their digits/classes; celeb_a `label_attribute`
  (default Male) as 0/1; LSUN and folders 0; in A+B the index of the part.
  """
  specs = parts(name)
  if label_attribute is not None:
    _check_label_attribute(specs, label_attribute)
  data_dir = resolve_data_dir(data_dir)
  res = image_shape(name, resolution)[0]
  for s in specs:
    _check_split(s, split)
  _check_lsun_archives(name, specs, split, data_dir, res, manual_dir)
  out = []
  try:
    for i, s in enumerate(specs):
      part = _open_one(s, split, data_dir, res, prepare_if_missing, manual_dir, workers)
      if label_attribute is not None:
        column = CELEBA_ATTRIBUTES.index(label_attribute)
        part.labels = part.attributes()[:, column].astype(np.int32)
      if len(specs) > 1:
        part.labels = np.full(part.count, i, np.int32)
      out.append(part)
  except BaseException:
    for part in out:
      part.close()
    raise
  return out, res


def _open_one(s: DatasetSpec, split: str, data_dir: str, res: int, prepare_if_missing: bool,
              manual_dir: str | None, workers: int | None) -> Part:
  if s.kind == "tfds":
    images, labels = tfds_arrays.load(s, split, data_dir, res, prepare_if_missing)
    return Part(s, labels, images=images)
  if s.kind != "folder" and tfds_is_mocked():
    images, labels, attrs, names = tfds_images.load_mocked(s, split, data_dir, res, workers)
    return Part(s, labels, images=images, attributes=attrs, attribute_names=names)
  data = prepare_one(s, split, data_dir, res, prepare_if_missing=prepare_if_missing,
                     manual_dir=manual_dir, workers=workers)
  return Part(s, data.labels, prepared_data=data, attribute_names=data.attribute_names)


# ----------------------------------------------------------------------------
# Loading whole splits.


def memory_limit() -> int:
  """80% of this machine's RAM: the most `load_images` puts in one array."""
  try:
    return int(0.8 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
  except (ValueError, OSError, AttributeError):
    return 1 << 62


def load_images(name: str, split: str = "train", data_dir: str | None = None,
                resolution: int | None = None, prepare_if_missing: bool = True, *,
                manual_dir: str | None = None, label_attribute: str | None = None,
                workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Images uint8 (N, H, W, C) and labels int32 (N,) of one split, all in memory.

  mnist/fashion_mnist: resolution None or the native size returns the images
  as stored; another size resizes every image once (`tfds_arrays`), cached
  under <data_dir>/igan_jax_cache/.  When the dataset is not prepared and
  `prepare_if_missing`, preparation runs in a subprocess so that this process
  never imports TensorFlow.

  celeb_a, lsun/<category>, folder:/path and A+B combinations: prepared once into
  shards (resolution None = 96; `workers` decode threads), loaded whole.  Raises
  DatasetError when the images would take more than 80% of the machine's RAM (LSUN
  bedroom: 83 GB at 96x96): stream those with `stream_batches`.  `manual_dir` (default
  <data_dir>/downloads/manual) is where the original files are; `label_attribute` picks
  the CelebA attribute used as label (default Male).
  """
  specs = parts(name)
  if len(specs) == 1 and specs[0].kind == "tfds" and label_attribute is None:
    s = specs[0]
    return tfds_arrays.load(s, split, resolve_data_dir(data_dir),
                            resolve_resolution(s, resolution), prepare_if_missing, manual_dir)
  opened, res = open_parts(name, split, data_dir, resolution,
                           prepare_if_missing=prepare_if_missing, manual_dir=manual_dir,
                           label_attribute=label_attribute, workers=workers)
  try:
    total = sum(p.count for p in opened) * int(np.prod(opened[0].shape))
    if total > memory_limit():
      raise DatasetError(
          f"{name} ({split}) at {res}x{res} is {total / 1e9:.1f} GB, more than 80% of "
          f"this machine's memory; use igan_jax.data.stream_batches instead of "
          f"load_images.")
    if len(opened) == 1:
      return opened[0].load_all(), opened[0].labels
    return (np.concatenate([p.load_all() for p in opened]),
            np.concatenate([p.labels for p in opened]))
  finally:
    for p in opened:
      p.close()


def load_attributes(name: str = "celeb_a", split: str = "train", data_dir: str | None = None,
                    resolution: int | None = None, prepare_if_missing: bool = True, *,
                    manual_dir: str | None = None) -> tuple[tuple[str, ...], np.ndarray]:
  """(attribute names, bool (N, A)) of a dataset with attributes (CelebA), in the
  order of `load_images`' images."""
  opened, _ = open_parts(name, split, data_dir, resolution,
                         prepare_if_missing=prepare_if_missing, manual_dir=manual_dir)
  try:
    if len(opened) != 1 or not opened[0].attribute_names:
      raise DatasetError(f"{name} has no attributes (only celeb_a has).")
    return opened[0].attribute_names, opened[0].attributes()
  finally:
    for p in opened:
      p.close()


# ----------------------------------------------------------------------------
# Sizes.

# Published sizes (TFDS catalog / the datasets' pages), for planning before
# anything is prepared; the prepared manifest has the exact count.
_KNOWN_COUNTS = {
    ("mnist", "train"): 60000, ("mnist", "test"): 10000,
    ("fashion_mnist", "train"): 60000, ("fashion_mnist", "test"): 10000,
    ("celeb_a", "train"): 162770, ("celeb_a", "validation"): 19867, ("celeb_a", "test"): 19962,
    ("lsun/bedroom", "train"): 3033042, ("lsun/bedroom", "validation"): 300,
    ("lsun/church_outdoor", "train"): 126227, ("lsun/church_outdoor", "validation"): 300,
    ("lsun/kitchen", "train"): 2212277, ("lsun/kitchen", "validation"): 300,
}


def dataset_size(name: str, split: str = "train", data_dir: str | None = None,
                 resolution: int | None = None, *, manual_dir: str | None = None,
                 prepare_if_missing: bool = True) -> int:
  """Number of images of `split` (after skipping unreadable ones); prepares if needed."""
  opened, _ = open_parts(name, split, data_dir, resolution, manual_dir=manual_dir,
                         prepare_if_missing=prepare_if_missing)
  for p in opened:
    p.close()
  return sum(p.count for p in opened)


def _estimated_count(s: DatasetSpec, split: str, data_dir: str, res: int) -> int:
  if s.kind != "tfds" and not (s.kind != "folder" and tfds_is_mocked()):
    manifest = os.path.join(prepared_path(data_dir, s, split, res), "manifest.json")
    if os.path.exists(manifest):
      with open(manifest) as f:
        return int(json.load(f)["count"])
  if s.kind == "folder":
    return folder.count_files(s)  # an upper bound
  split_parts = split.split("+")
  if all((s.name, p) in _KNOWN_COUNTS for p in split_parts) and not tfds_is_mocked():
    return sum(_KNOWN_COUNTS[(s.name, p)] for p in split_parts)
  return dataset_size(s.name, split, data_dir, res)


def dataset_bytes(name: str, resolution: int | None = None, *, split: str = "train",
                  data_dir: str | None = None) -> int:
  """Bytes of the uint8 images of `split` at `resolution` (estimated before preparing:
  published counts; a folder's file count)."""
  data_dir = resolve_data_dir(data_dir)
  h, w, c = image_shape(name, resolution)
  return sum(_estimated_count(s, split, data_dir, h) for s in parts(name)) * h * w * c


def fits_in_memory(name: str, resolution: int | None, budget_bytes: int, *,
                   split: str = "train", data_dir: str | None = None) -> bool:
  """Whether the uint8 images of `split` take at most `budget_bytes` (e.g. the
  device memory you give the dataset); does not prepare anything."""
  return dataset_bytes(name, resolution, split=split, data_dir=data_dir) <= budget_bytes
