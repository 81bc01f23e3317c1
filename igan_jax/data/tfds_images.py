"""CelebA through TFDS, prepared into shards; and every TFDS dataset under the mock.

celeb_a (kind "tfds_images"): TFDS prepares it (in a subprocess: TFDS's builder needs
TensorFlow, `tfds_prepare`), then `TfdsSource` reads TFDS's array_record with
``tfds.data_source`` (no TensorFlow) taking the undecoded JPEG bytes, which Pillow decodes in
the builder's worker threads (`igan_jax.data.prepared.build`).

Under ``tfds.testing.mock_data`` celeb_a and lsun/<category> come from TFDS's fake examples:
`load_mocked` processes them in memory with the same recipe and writes nothing.

tensorflow_datasets is imported in `TfdsSource` only: importing it takes ~0.4 s (measured,
`python -X importtime`) and a training process whose data is already prepared needs no TFDS.
"""

from __future__ import annotations

import numpy as np

from igan_jax.data import prepared, tfds_prepare
from igan_jax.data.core import (CELEBA_ATTRIBUTES, CELEBA_LABEL, PREPARE_PROG, DatasetError,
                                DatasetSpec, one_line, prepare_command, prepared_path)


class TfdsSource:
  """The builder's view of a TFDS split read with tfds.data_source (no TensorFlow).

  Real data: the image feature is not decoded by TFDS (SkipDecoding) but by
  Pillow in our worker threads.  Under the mock: TFDS's decoded fake arrays,
  one example at a time (its mocked __getitems__ cannot be called).
  """

  exif_transpose = False

  def __init__(self, s: DatasetSpec, split: str, data_dir: str, mocked: bool):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (~0.4 s; docstring)
    self.s, self.mocked = s, mocked
    kwargs = {} if mocked else {"decoders": {"image": tfds.decode.SkipDecoding()}}
    try:
      self.ds = tfds.data_source(s.tfds_name, split=split, data_dir=data_dir,
                                 download=False,
                                 builder_kwargs={"file_format": "array_record"}, **kwargs)
    except Exception as e:  # pylint: disable=broad-except
      raise DatasetError(
          f"Cannot read split {split!r} of {s.name} from {data_dir} "
          f"({type(e).__name__}: {one_line(str(e))}); "
          f"check the split name (e.g. 'train', 'validation', 'test', "
          f"'train+validation+test') or re-run `python -m {PREPARE_PROG} "
          f"--dataset={s.name} --data_dir={data_dir}`.") from e
    self.count = len(self.ds)
    self.attribute_names = CELEBA_ATTRIBUTES if s.name == "celeb_a" else ()

  def items(self, start: int, stop: int) -> list[prepared.Item]:
    keys = list(range(start, stop))
    examples = ([self.ds[k] for k in keys] if self.mocked or not keys
                else self.ds.__getitems__(keys))
    out = []
    male = CELEBA_ATTRIBUTES.index(CELEBA_LABEL)
    for ex in examples:
      image = ex["image"]
      if isinstance(image, np.ndarray) and image.dtype == object:
        image = image.item()
      attrs = label = None
      if self.attribute_names:
        attrs = np.array([bool(ex["attributes"][a]) for a in self.attribute_names])
        label = int(attrs[male])
      ident = ex.get("id", b"")
      if isinstance(ident, str):
        ident = ident.encode()
      out.append(prepared.Item(bytes(ident), image, label or 0, attrs))
    return out


def _label_info(s: DatasetSpec) -> dict:
  if s.name == "celeb_a":
    return {"meaning": f"CelebA attribute {CELEBA_LABEL}: 1 = {CELEBA_LABEL}, 0 = not "
                       f"{CELEBA_LABEL}",
            "num_classes": 2}
  return prepared.ONE_CLASS_LABELS


def prepare_split(s: DatasetSpec, split: str, data_dir: str, res: int, *, manual_dir: str,
                  prepare_if_missing: bool = True,
                  workers: int | None = None) -> prepared.Prepared:
  """The prepared dataset of `split` of `s` at `res`; TFDS's step first when missing."""
  recipe = prepared.recipe_for(s, split, res, {
      "source": f"TFDS {s.tfds_name} (array_record), JPEG bytes decoded by Pillow",
      "labels": f"attribute {CELEBA_LABEL}"})
  path = prepared_path(data_dir, s, split, res)
  existing = prepared.Prepared.open(path, recipe)
  if existing is not None:
    return existing
  if not prepare_if_missing:
    hint = prepare_command(s.name, data_dir, split, res)
    raise DatasetError(f"{s.name} ({split}) is not prepared at {res}x{res} in {data_dir}; "
                       f"run `{hint}` first.")
  if not tfds_prepare.is_prepared(s.name, data_dir):
    tfds_prepare.prepare_in_subprocess(s.name, data_dir, manual_dir)
  source = TfdsSource(s, split, data_dir, mocked=False)
  return prepared.build(path, recipe, source, name=s.name, label_info=_label_info(s),
                        workers=workers,
                        empty_message=f"Split {split!r} of {s.name} has no readable image")


def load_mocked(s: DatasetSpec, split: str, data_dir: str, res: int,
                workers: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[str, ...]]:
  """(images, labels, attributes or None, attribute names) of TFDS's fake `split` of `s`,
  processed in memory with the recipe of `s` (nothing is written)."""
  source = TfdsSource(s, split, data_dir, mocked=True)
  _, (images, labels, attrs, _) = prepared.process_all(source, s.crop, res, workers=workers)
  if not len(images):
    raise DatasetError(f"No usable images in the mock data of {s.name}.")
  return images, labels, attrs if source.attribute_names else None, source.attribute_names
