"""CelebA, LSUN, folders and A+B combinations: prepared once, loaded or streamed.

`open_parts` is the one place that turns a dataset name into readable data:
for every dataset behind the name (one, or the classes of A+B) it returns a
`Part` that is either in memory (mnist/fashion_mnist through their .npz
cache; anything under `tfds.testing.mock_data`) or a prepared dataset on disk
(`igan_jax.data.prepared.Prepared`), building that once when missing:

* celeb_a: TFDS prepares it (in a subprocess: TFDS's builder needs
  TensorFlow), then we read TFDS's array_record with `tfds.data_source` (no
  TensorFlow) taking the undecoded JPEG bytes, and decode them with Pillow.
* lsun/<category>: the LMDB archive in the manual dir (`igan_jax.data.lsun`).
* folder:/abs/path: the files under it (`igan_jax.data.folder`).

Nothing here imports TensorFlow.  Under the mock, TFDS's fake examples are
processed in memory with the same recipe and nothing is written (as in
`sources.load_images`).
"""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np

from igan_jax.data import prepared as prepared_lib
from igan_jax.data import sources
from igan_jax.data.sources import DatasetError


class Part:
    """One dataset of a name: its images (in memory or prepared on disk) and labels."""

    def __init__(self, spec: sources.DatasetSpec, labels: np.ndarray, *,
                 images: np.ndarray | None = None,
                 prepared: prepared_lib.Prepared | None = None,
                 attributes: np.ndarray | None = None, attribute_names=()):
        self.spec = spec
        self.labels = np.asarray(labels, np.int32)
        self.images = images
        self.prepared = prepared
        self._attributes = attributes
        self.attribute_names = tuple(attribute_names)
        self.count = len(self.labels)
        self.shape = tuple(images.shape[1:]) if images is not None else prepared.shape

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
    specs = sources.parts(name)
    res = {sources._resolve_resolution(s, resolution) for s in specs}  # pylint: disable=protected-access
    if len(res) != 1:
        raise DatasetError(f"{name!r} combines datasets of different native resolutions; "
                           f"pass resolution=.")
    r = res.pop()
    return (r, r, specs[0].channels if specs[0].kind != "tfds" else specs[0].native_shape[2])


def num_classes(name: str, label_attribute: str | None = None) -> int:
    """Number of label classes: 10 (MNIST, Fashion-MNIST), 2 (CelebA: an attribute
    off/on), 1 (one LSUN category, a folder), the number of parts of A+B."""
    specs = sources.parts(name)
    if label_attribute is not None:
        _check_label_attribute(specs, label_attribute)
    return len(specs) if len(specs) > 1 else specs[0].num_classes


def _check_label_attribute(specs, label_attribute: str) -> None:
    if len(specs) != 1 or specs[0].name != "celeb_a":
        raise DatasetError(f"label_attribute applies to celeb_a only (got it for "
                           f"{'+'.join(s.name for s in specs)}).")
    if label_attribute not in sources.CELEBA_ATTRIBUTES:
        raise DatasetError(f"Unknown CelebA attribute {label_attribute!r}; one of: "
                           f"{', '.join(sources.CELEBA_ATTRIBUTES)}.")


def _check_split(s: sources.DatasetSpec, split: str) -> None:
    if not isinstance(split, str) or not split:
        raise DatasetError(f"split must be a non-empty string, got {split!r}.")
    if s.kind == "folder" and split != "train":
        raise DatasetError(f"A folder dataset has one split, 'train' (all its images); "
                           f"got {split!r}.")
    if s.kind == "lsun":
        from igan_jax.data import lsun  # pylint: disable=g-import-not-at-top
        lsun.archive_name(s.name[len("lsun/"):], split)  # raises for other splits


# ----------------------------------------------------------------------------
# Recipes and where prepared data lives.


def _recipe(s: sources.DatasetSpec, split: str, res: int, source: dict) -> dict:
    from igan_jax.data import imageproc  # pylint: disable=g-import-not-at-top
    recipe = {"format": prepared_lib.FORMAT, "dataset": s.name, "split": split}
    recipe.update(source)
    recipe.update(imageproc.recipe_dict(s.crop, res, exif_transpose=s.kind == "folder"))
    return recipe


def prepared_path(data_dir: str, s: sources.DatasetSpec, split: str, res: int) -> str:
    """<data_dir>/igan_jax_cache/<tag>-<split>-<res>/ for a prepared dataset."""
    if s.kind == "folder":
        root = s.name[len("folder:"):]
        base = os.path.basename(root.rstrip("/")) or "root"
        tag = (f"folder_{sources._safe_tag(base)}_"  # pylint: disable=protected-access
               f"{hashlib.sha1(root.encode('utf-8', 'surrogateescape')).hexdigest()[:10]}")
    else:
        tag = s.name.replace("/", "_")
    return os.path.join(data_dir, sources._CACHE_SUBDIR,  # pylint: disable=protected-access
                        f"{tag}-{sources._safe_tag(split)}-{res}")  # pylint: disable=protected-access


def _label_info(s: sources.DatasetSpec) -> dict:
    if s.name == "celeb_a":
        return {"meaning": f"CelebA attribute {sources.CELEBA_LABEL}: 1 = "
                           f"{sources.CELEBA_LABEL}, 0 = not {sources.CELEBA_LABEL}",
                "num_classes": 2}
    return {"meaning": "0 for every image (one class)", "num_classes": 1}


# ----------------------------------------------------------------------------
# TFDS-backed sources (celeb_a; any kind under the mock).


class _TfdsSource:
    """The builder's view of a TFDS split read with tfds.data_source (no TensorFlow).

    Real data: the image feature is not decoded by TFDS (SkipDecoding) but by
    Pillow in our worker threads.  Under the mock: TFDS's decoded fake arrays,
    one example at a time (its mocked __getitems__ cannot be called).
    """

    exif_transpose = False

    def __init__(self, s: sources.DatasetSpec, split: str, data_dir: str, mocked: bool):
        import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
        self.s, self.mocked = s, mocked
        kwargs = {} if mocked else {"decoders": {"image": tfds.decode.SkipDecoding()}}
        try:
            self.ds = tfds.data_source(s.tfds_name, split=split, data_dir=data_dir,
                                       download=False,
                                       builder_kwargs={"file_format": "array_record"}, **kwargs)
        except Exception as e:  # pylint: disable=broad-except
            raise DatasetError(
                f"Cannot read split {split!r} of {s.name} from {data_dir} "
                f"({type(e).__name__}: {sources._one_line(str(e))}); "  # pylint: disable=protected-access
                f"check the split name (e.g. 'train', 'validation', 'test', "
                f"'train+validation+test') or re-run `python -m {sources._PREPARE_PROG} "  # pylint: disable=protected-access
                f"--dataset={s.name} --data_dir={data_dir}`.") from e
        self.count = len(self.ds)
        self.attribute_names = sources.CELEBA_ATTRIBUTES if s.name == "celeb_a" else ()

    def items(self, start: int, stop: int) -> list:
        keys = list(range(start, stop))
        examples = ([self.ds[k] for k in keys] if self.mocked or not keys
                    else self.ds.__getitems__(keys))
        out = []
        male = sources.CELEBA_ATTRIBUTES.index(sources.CELEBA_LABEL)
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
            out.append(prepared_lib.Item(bytes(ident), image, label or 0, attrs))
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
    specs = sources.parts(name)
    if label_attribute is not None:
        _check_label_attribute(specs, label_attribute)
    data_dir = sources._resolve_data_dir(data_dir)  # pylint: disable=protected-access
    res = image_shape(name, resolution)[0]
    for s in specs:
        _check_split(s, split)
    _check_lsun_archives(name, specs, split, data_dir, res, manual_dir)
    out = []
    try:
        for i, s in enumerate(specs):
            part = _open_one(s, split, data_dir, res, prepare_if_missing, manual_dir, workers)
            if label_attribute is not None:
                column = sources.CELEBA_ATTRIBUTES.index(label_attribute)
                part.labels = part.attributes()[:, column].astype(np.int32)
            if len(specs) > 1:
                part.labels = np.full(part.count, i, np.int32)
            out.append(part)
    except BaseException:
        for part in out:
            part.close()
        raise
    return out, res


def _check_lsun_archives(name: str, specs, split: str, data_dir: str, res: int,
                         manual_dir: str | None) -> None:
    """One DatasetError naming every LSUN archive still needed and missing."""
    if sources._tfds_is_mocked():  # pylint: disable=protected-access
        return
    from igan_jax.data import lsun  # pylint: disable=g-import-not-at-top
    manual_dir = os.path.abspath(os.path.expanduser(
        manual_dir or sources.default_manual_dir(data_dir)))
    missing = []
    for s in specs:
        if s.kind != "lsun" or os.path.exists(
                os.path.join(prepared_path(data_dir, s, split, res), "manifest.json")):
            continue
        try:
            lsun.check_archives(s.name, s.name[len("lsun/"):], [split], manual_dir)
        except DatasetError:
            missing.append(lsun.archive_name(s.name[len("lsun/"):], split))
    if missing:
        raise DatasetError(lsun.missing_message(name, manual_dir, missing))


def _open_one(s: sources.DatasetSpec, split: str, data_dir: str, res: int,
              prepare_if_missing: bool, manual_dir: str | None, workers: int | None) -> Part:
    if s.kind == "tfds":
        images, labels = sources.load_images(s.name, split, data_dir, res, prepare_if_missing)
        return Part(s, labels, images=images)
    if s.kind != "folder" and sources._tfds_is_mocked():  # pylint: disable=protected-access
        source = _TfdsSource(s, split, data_dir, mocked=True)
        chunk, (images, labels, attrs, _) = prepared_lib.process_all(source, s.crop, res,
                                                                     workers=workers)
        if not len(images):
            raise DatasetError(f"No usable images in the mock data of {s.name}.")
        return Part(s, labels, images=images, attributes=attrs if source.attribute_names else None,
                    attribute_names=source.attribute_names)
    prepared = prepare_one(s, split, data_dir, res, prepare_if_missing=prepare_if_missing,
                           manual_dir=manual_dir, workers=workers)
    return Part(s, prepared.labels, prepared=prepared,
                attribute_names=prepared.attribute_names)


def prepare_one(s: sources.DatasetSpec, split: str, data_dir: str, res: int, *,
                prepare_if_missing: bool = True, manual_dir: str | None = None,
                workers: int | None = None) -> prepared_lib.Prepared:
    """The prepared dataset of one non-mnist dataset, built when missing."""
    manual_dir = os.path.abspath(os.path.expanduser(
        manual_dir or sources.default_manual_dir(data_dir)))
    path = prepared_path(data_dir, s, split, res)
    hint = (f"`{sys.executable} -m {sources._PREPARE_PROG} --dataset={s.name} "  # pylint: disable=protected-access
            f"--split={split} --resolution={res} --data_dir={data_dir}`")

    if s.kind == "folder":
        from igan_jax.data import folder  # pylint: disable=g-import-not-at-top
        root = folder.folder_path(s.name)
        files = folder.list_files(root)
        recipe = _recipe(s, split, res, {"source": f"folder {root}", "files": len(files),
                                         "fingerprint": folder.fingerprint(files)})
        existing = prepared_lib.Prepared.open(path, recipe)
        if existing is not None:
            return existing
        if not files:
            raise DatasetError(f"Folder dataset {root} contains no files (hidden files and "
                               f"directories are ignored); put images (jpg, png, ...) in it.")
        if not prepare_if_missing:
            raise DatasetError(f"{s.name} is not prepared at {res}x{res} in {data_dir} (or "
                               f"the folder changed); run {hint} first.")
        return prepared_lib.build(
            path, recipe, folder.FolderSource(root, files), name=s.name,
            label_info=_label_info(s), workers=workers,
            empty_message=f"Folder dataset {root} contains no readable image")

    if s.kind == "lsun":
        from igan_jax.data import lsun  # pylint: disable=g-import-not-at-top
        archive_file = lsun.archive_name(s.name[len("lsun/"):], split)
        recipe = _recipe(s, split, res, {"source": f"LSUN {archive_file} (LMDB, key order)"})
        existing = prepared_lib.Prepared.open(path, recipe)
        if existing is not None:
            return existing
        if not prepare_if_missing:
            raise DatasetError(f"{s.name} ({split}) is not prepared at {res}x{res} in "
                               f"{data_dir}; run {hint} first.")
        archive = lsun.Archive(s.name, s.name[len("lsun/"):], split, manual_dir,
                               os.path.dirname(path))
        try:
            result = prepared_lib.build(path, recipe, lsun.LsunSource(archive), name=s.name,
                                        label_info=_label_info(s), workers=workers,
                                        empty_message=f"{archive.source} holds no readable "
                                                      f"image")
        except BaseException:
            archive.close(keep_extracted=True)  # the resumed build reuses it
            raise
        archive.close()
        return result

    # tfds_images (celeb_a)
    recipe = _recipe(s, split, res, {
        "source": f"TFDS {s.tfds_name} (array_record), JPEG bytes decoded by Pillow",
        "labels": f"attribute {sources.CELEBA_LABEL}"})
    existing = prepared_lib.Prepared.open(path, recipe)
    if existing is not None:
        return existing
    if not prepare_if_missing:
        raise DatasetError(f"{s.name} ({split}) is not prepared at {res}x{res} in {data_dir}; "
                           f"run {hint} first.")
    if not sources.is_prepared(s.name, data_dir):
        sources._prepare_in_subprocess(s.name, data_dir, manual_dir)  # pylint: disable=protected-access
    source = _TfdsSource(s, split, data_dir, mocked=False)
    return prepared_lib.build(path, recipe, source, name=s.name, label_info=_label_info(s),
                              workers=workers,
                              empty_message=f"Split {split!r} of {s.name} has no readable image")


# ----------------------------------------------------------------------------
# Public helpers.


def _memory_limit() -> int:
    try:
        return int(0.8 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def load_images(name: str, split: str = "train", data_dir: str | None = None,
                resolution: int | None = None, prepare_if_missing: bool = True, *,
                manual_dir: str | None = None, label_attribute: str | None = None,
                workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All images (N, res, res, C) uint8 and labels (N,) int32 in memory.

    Raises DatasetError when the images would take more than 80% of the
    machine's RAM (LSUN bedroom: 83 GB at 96x96): stream those instead.
    """
    parts, res = open_parts(name, split, data_dir, resolution,
                            prepare_if_missing=prepare_if_missing, manual_dir=manual_dir,
                            label_attribute=label_attribute, workers=workers)
    try:
        total = sum(p.count for p in parts) * int(np.prod(parts[0].shape))
        if total > _memory_limit():
            raise DatasetError(
                f"{name} ({split}) at {res}x{res} is {total / 1e9:.1f} GB, more than 80% of "
                f"this machine's memory; use igan_jax.data.stream_batches instead of "
                f"load_images.")
        if len(parts) == 1:
            return parts[0].load_all(), parts[0].labels
        return (np.concatenate([p.load_all() for p in parts]),
                np.concatenate([p.labels for p in parts]))
    finally:
        for p in parts:
            p.close()


def load_attributes(name: str = "celeb_a", split: str = "train", data_dir: str | None = None,
                    resolution: int | None = None, prepare_if_missing: bool = True, *,
                    manual_dir: str | None = None) -> tuple[tuple[str, ...], np.ndarray]:
    """(attribute names, bool (N, A)) of a dataset with attributes (CelebA), in the
    order of `load_images`' images."""
    parts, _ = open_parts(name, split, data_dir, resolution,
                          prepare_if_missing=prepare_if_missing, manual_dir=manual_dir)
    try:
        if len(parts) != 1 or not parts[0].attribute_names:
            raise DatasetError(f"{name} has no attributes (only celeb_a has).")
        return parts[0].attribute_names, parts[0].attributes()
    finally:
        for p in parts:
            p.close()


def prepare_images(name: str, split: str = "train", data_dir: str | None = None,
                   resolution: int | None = None, *, manual_dir: str | None = None,
                   workers: int | None = None) -> list[str]:
    """Prepares `name` once (every part of A+B); returns where the data is.

    For mnist/fashion_mnist that is the .npz cache; for the others the
    prepared directory (with its manifest.json).
    """
    data_dir = sources._resolve_data_dir(data_dir)  # pylint: disable=protected-access
    res = image_shape(name, resolution)[0]
    specs = sources.parts(name)
    for s in specs:
        _check_split(s, split)
    _check_lsun_archives(name, specs, split, data_dir, res, manual_dir)
    out = []
    for s in specs:
        if s.kind == "tfds":
            sources.load_images(s.name, split, data_dir, res)
            out.append(sources._cache_path(data_dir, s, split, res))  # pylint: disable=protected-access
        else:
            prepare_one(s, split, data_dir, res, manual_dir=manual_dir, workers=workers).close()
            out.append(prepared_path(data_dir, s, split, res))
    return out


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
    parts, _ = open_parts(name, split, data_dir, resolution, manual_dir=manual_dir,
                          prepare_if_missing=prepare_if_missing)
    for p in parts:
        p.close()
    return sum(p.count for p in parts)


def _estimated_count(s: sources.DatasetSpec, split: str, data_dir: str, res: int) -> int:
    if s.kind != "tfds" and not (s.kind != "folder" and sources._tfds_is_mocked()):  # pylint: disable=protected-access
        path = prepared_path(data_dir, s, split, res)
        manifest = os.path.join(path, "manifest.json")
        if os.path.exists(manifest):
            import json  # pylint: disable=g-import-not-at-top
            with open(manifest) as f:
                return int(json.load(f)["count"])
    if s.kind == "folder":
        from igan_jax.data import folder  # pylint: disable=g-import-not-at-top
        return len(folder.list_files(folder.folder_path(s.name)))  # an upper bound
    split_parts = split.split("+")
    if all((s.name, p) in _KNOWN_COUNTS for p in split_parts) and \
            not sources._tfds_is_mocked():  # pylint: disable=protected-access
        return sum(_KNOWN_COUNTS[(s.name, p)] for p in split_parts)
    return dataset_size(s.name, split, data_dir, res)


def dataset_bytes(name: str, resolution: int | None = None, *, split: str = "train",
                  data_dir: str | None = None) -> int:
    """Bytes of the uint8 images of `split` at `resolution` (estimated before preparing:
    published counts; a folder's file count)."""
    data_dir = sources._resolve_data_dir(data_dir)  # pylint: disable=protected-access
    h, w, c = image_shape(name, resolution)
    return sum(_estimated_count(s, split, data_dir, h) for s in sources.parts(name)) * h * w * c


def fits_in_memory(name: str, resolution: int | None, budget_bytes: int, *,
                   split: str = "train", data_dir: str | None = None) -> bool:
    """Whether the uint8 images of `split` take at most `budget_bytes` (e.g. the
    device memory you give the dataset); does not prepare anything."""
    return dataset_bytes(name, resolution, split=split, data_dir=data_dir) <= budget_bytes
