"""A folder of images as a dataset: ``folder:/abs/path``.

Every regular file under the folder (nested directories included, symlinked
directories not followed) is a candidate, in sorted order of its path relative
to the folder; Pillow decides from the contents whether it is an image (any
format it reads: JPEG, PNG, GIF's first frame, BMP, WebP, TIFF, ...), so file
extensions do not matter.  Hidden files and directories (names starting with
".") and directories named ``igan_jax_cache`` are ignored.  Files that are not
images, or are corrupt or truncated, are skipped; how many (and which, up to
1000) is printed and recorded in the prepared dataset's manifest.

The recipe: EXIF orientation applied, the largest centred square, resized to
the resolution (see `igan_jax.data.imageproc`); always 3 channels.  All images
get label 0 (one class).

The recipe includes a fingerprint of the listing (relative path, size and
mtime of every candidate file), so adding, removing or changing a file makes
the next load rebuild the prepared data instead of silently using the old one.
"""

from __future__ import annotations

import hashlib
import os

from igan_jax.data import prepared
from igan_jax.data.core import (CACHE_SUBDIR, DatasetError, DatasetSpec, folder_path,
                                prepare_command, prepared_path)


def list_files(root: str) -> list[tuple[str, int, int]]:
  """[(relative path, size, mtime_ns)] of the candidate files, sorted by path."""
  if not os.path.isdir(root):
    raise DatasetError(f"Folder dataset {root} does not exist or is not a directory.")
  out = []

  def walk(d: str, rel: str):
    try:
      entries = sorted(os.scandir(d), key=lambda e: e.name)
    except OSError as e:
      raise DatasetError(f"Cannot list {d}: {e}") from e
    for e in entries:
      if e.name.startswith("."):
        continue
      r = f"{rel}{e.name}"
      if e.is_dir(follow_symlinks=False):
        if e.name != CACHE_SUBDIR:
          walk(e.path, r + "/")
      elif e.is_file():
        try:
          st = e.stat()
        except OSError:  # a dangling or unreadable entry: reported when read
          out.append((r, -1, 0))
          continue
        out.append((r, st.st_size, st.st_mtime_ns))

  walk(root, "")
  return out


def fingerprint(files: list[tuple[str, int, int]]) -> str:
  h = hashlib.sha256()
  for rel, size, mtime in files:
    h.update(f"{rel}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
  return h.hexdigest()


def _read(path: str):
  with open(path, "rb") as f:
    return f.read()


class FolderSource:
  """The builder's view of a folder (see `igan_jax.data.prepared.build`)."""

  attribute_names: tuple[str, ...] = ()
  exif_transpose = True

  def __init__(self, root: str, files: list[tuple[str, int, int]]):
    self.root = root
    self.files = files
    self.count = len(files)

  def items(self, start: int, stop: int) -> list[prepared.Item]:
    out = []
    for rel, _, _ in self.files[start:stop]:
      path = os.path.join(self.root, rel)
      out.append(prepared.Item(rel.encode("utf-8", "surrogateescape"),
                      lambda p=path: _read(p)))
    return out


def _no_files_message(root: str) -> str:
  return (f"Folder dataset {root} contains no files (hidden files and directories are "
          f"ignored); put images (jpg, png, ...) in it.")


def check_sources(s: DatasetSpec) -> None:
  """DatasetError unless the folder of `s` holds at least one candidate file."""
  root = folder_path(s.name)
  if not list_files(root):
    raise DatasetError(_no_files_message(root))


def count_files(s: DatasetSpec) -> int:
  """The number of candidate files: an upper bound on the images of `s`."""
  return len(list_files(folder_path(s.name)))


def prepare_split(s: DatasetSpec, split: str, data_dir: str, res: int, *,
                  prepare_if_missing: bool = True,
                  workers: int | None = None) -> prepared.Prepared:
  """The prepared dataset of the folder of `s` at `res`, built when missing or stale."""
  root = folder_path(s.name)
  files = list_files(root)
  recipe = prepared.recipe_for(s, split, res, {"source": f"folder {root}", "files": len(files),
                                               "fingerprint": fingerprint(files)})
  path = prepared_path(data_dir, s, split, res)
  existing = prepared.Prepared.open(path, recipe)
  if existing is not None:
    return existing
  if not files:
    raise DatasetError(_no_files_message(root))
  if not prepare_if_missing:
    hint = prepare_command(s.name, data_dir, split, res)
    raise DatasetError(f"{s.name} is not prepared at {res}x{res} in {data_dir} (or "
                       f"the folder changed); run `{hint}` first.")
  return prepared.build(
      path, recipe, FolderSource(root, files), name=s.name,
      label_info=prepared.ONE_CLASS_LABELS, workers=workers,
      empty_message=f"Folder dataset {root} contains no readable image")
