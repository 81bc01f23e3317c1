"""Named datasets: prepare them once with TFDS, load them as cached uint8 arrays.

Two phases with different dependencies:

* ``prepare`` downloads (or takes from a manual dir) and converts a dataset to
  TFDS's array_record format.  TFDS's builders import TensorFlow for this.
* ``load_images`` is what a training process calls.  It must never import
  TensorFlow, so it reads the prepared data through ``tfds.data_source(...,
  download=False)`` (pure Python + array_record), and when the dataset is not
  prepared it runs the preparation in a *subprocess*
  (``python -m igan_jax.data.prepare``).  The decoded images are cached once as
  ``<data_dir>/igan_jax_cache/<name>-<split>-<resolution>.npz``, because
  decoding 60k PNGs through TFDS takes ~13 s and a cached array loads in well
  under a second.

Under ``tfds.testing.mock_data`` ``load_images`` reads TFDS's fake examples
in-process and writes no cache: the mock ignores ``data_dir``, so a cache
written then would sit in a real data dir holding random bytes that a later
real run would load as if they were the dataset.  ``prepare`` is a no-op under
the mock, like TFDS's own ``download_and_prepare``.

There is no fallback to fake data: a dataset that cannot be found raises
DatasetError with one paragraph that says what to do.

Dataset names (`is_supported`):

* ``mnist``, ``fashion_mnist``: 28x28x1, 10 classes, cached as one .npz.
* ``celeb_a``: TFDS's CelebA (prepared with TFDS, may need TensorFlow: in a
  subprocess), then cropped and resized once into a prepared dataset of .npy
  shards (`igan_jax.data.prepared`); labels are the attribute ``Male``
  (1 = Male, 0 = not Male: the two classes of IGAN_V2), all 40 attributes are
  kept (`load_attributes`, ``label_attribute=``).
* ``lsun/<category>``: any of TFDS's 30 LSUN categories, read from the
  original LMDB archives in TFDS's manual dir (`igan_jax.data.lsun`), one
  class.  IGAN_V2 needs a second scene class for LSUN bedroom: we use
  ``lsun/church_outdoor`` (`TWO_CLASS_LSUN`): an outdoor scene, clearly
  distinct from bedrooms, the usual second LSUN category of GAN papers, and a
  2.4 GB download (126k images) instead of kitchen's 2.2 M images.
* ``folder:/abs/path``: a folder of images (`igan_jax.data.folder`), one class.
* ``A+B[+C...]`` (not folders): the named datasets as classes 0, 1, ...,
  e.g. `TWO_CLASS_LSUN` = ``lsun/bedroom+lsun/church_outdoor``.

All but mnist/fashion_mnist have 3 channels and default to 96x96 (the paper's).
Data that does not fit in memory streams from the prepared shards through
`igan_jax.data.stream.stream_batches`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import uuid
import zipfile

import numpy as np

_log = logging.getLogger(__name__)


class DatasetError(Exception):
    """A dataset is missing, unknown or corrupt; str(e) is one actionable message."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What we need to know about one named dataset.

    Attributes:
      name: our name (the key of the registry; also the cache file prefix).
      tfds_name: TFDS builder name with the version pinned, so a TFDS upgrade
        that bumps the dataset version cannot silently change the data behind
        an existing cache.
      native_shape: (H, W, C) as stored, or None for variable-size datasets
        (those will need a crop recipe before they can be resized).
      num_classes: number of label classes.
      manual_files: the source files TFDS accepts in its manual dir.
      download_url: where those files can be fetched (the network check
        connects to its host).
      kind: "tfds" (decoded whole into an .npz cache), "tfds_images" (TFDS,
        then a prepared dataset of shards), "lsun" (LMDB archives read
        directly) or "folder".
      crop: the crop recipe of the prepared kinds (`igan_jax.data.imageproc`).
      homepage: where a person finds the files (shown in error messages
        instead of download_url when set).
      channels: channels of the prepared images.
    """

    name: str
    tfds_name: str
    native_shape: tuple[int, int, int] | None
    num_classes: int
    manual_files: tuple[str, ...]
    download_url: str
    kind: str = "tfds"
    crop: str | None = None
    homepage: str = ""
    channels: int = 1


_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# TFDS's celeb_a builder downloads these five files (datasets/celeb_a/
# checksums.tsv: the names TFDS looks for in the manual dir).
_CELEBA_FILES = (
    "img_align_celeba.zip",
    "list_attr_celeba.txt",
    "list_eval_partition.txt",
    "list_landmarks_align_celeba.txt",
    "identity_CelebA.txt",
)

# CelebA's 40 binary attributes, in the column order of list_attr_celeba.txt
# (= TFDS's ATTR_HEADINGS); attributes.npy stores them in this order.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
CELEBA_LABEL = "Male"  # IGAN_V2's two CelebA classes: not Male (0), Male (1)

# The resolution of the prepared 3-channel datasets when none is asked for (the paper's).
DEFAULT_RESOLUTION = 96

# IGAN_V2 on LSUN: bedrooms are class 0, church_outdoor class 1 (module docstring).
TWO_CLASS_LSUN = "lsun/bedroom+lsun/church_outdoor"

_REGISTRY: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        tfds_name="mnist:3.0.1",
        native_shape=(28, 28, 1),
        num_classes=10,
        manual_files=_MNIST_FILES,
        download_url="https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        tfds_name="fashion_mnist:3.0.1",
        native_shape=(28, 28, 1),
        num_classes=10,
        manual_files=_MNIST_FILES,
        download_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    "celeb_a": DatasetSpec(
        name="celeb_a",
        tfds_name="celeb_a:2.1.0",
        native_shape=(218, 178, 3),
        num_classes=2,
        manual_files=_CELEBA_FILES,
        download_url="https://drive.google.com/",
        kind="tfds_images",
        crop="center:108",  # imageproc.CELEBA_CROP
        homepage="http://mmlab.ie.cuhk.edu.hk/projects/CelebA.html",
        channels=3,
    ),
}
_LSUN_PREFIX = "lsun/"
_FOLDER_PREFIX = "folder:"

# The paper's datasets.  Also accepted (see is_supported): any lsun/<category>,
# folder:/abs/path, and A+B combinations.
SUPPORTED = ("mnist", "fashion_mnist", "celeb_a", "lsun/bedroom")

# Bump when the cache layout or the meaning of a recipe field changes.
_CACHE_FORMAT = 1
_CACHE_SUBDIR = "igan_jax_cache"
_READ_CHUNK = 8192  # examples decoded per __getitems__ call (bounds peak memory)
_PREPARE_PROG = "igan_jax.data.prepare"
_ERROR_PREFIX = f"{_PREPARE_PROG}: error: "  # how the CLI reports a DatasetError


def spec(name: str) -> DatasetSpec:
    """The spec of one dataset (not an A+B combination); DatasetError if unknown."""
    if not isinstance(name, str):
        raise DatasetError(f"A dataset name is a string, got {name!r}.")
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith(_LSUN_PREFIX):
        return _lsun_spec(name)
    if name.startswith(_FOLDER_PREFIX):
        from igan_jax.data import folder  # pylint: disable=g-import-not-at-top
        path = folder.folder_path(name)
        return DatasetSpec(name=f"{_FOLDER_PREFIX}{path}", tfds_name="", native_shape=None,
                           num_classes=1, manual_files=(), download_url="", kind="folder",
                           crop="center_short_side", channels=3)
    supported = ", ".join(SUPPORTED)
    raise DatasetError(f"Unknown dataset {name!r}; supported datasets: {supported}; also "
                       f"lsun/<category>, folder:/abs/path and A+B (classes 0, 1).")


def _lsun_spec(name: str) -> DatasetSpec:
    from igan_jax.data import lsun  # pylint: disable=g-import-not-at-top
    category = name[len(_LSUN_PREFIX):]
    scenes, objects = lsun.categories()
    if category not in scenes + objects:
        raise DatasetError(f"Unknown LSUN category {category!r} in {name!r}; scenes: "
                           f"{', '.join(scenes)}; objects: {', '.join(objects)}.")
    if category in scenes:
        files = (f"{category}_train_lmdb.zip", f"{category}_val_lmdb.zip")
        url = lsun.BASE_URL + "scenes/"
    else:
        files, url = (f"{category}.zip",), lsun.BASE_URL + "objects/"
    return DatasetSpec(name=name, tfds_name=f"lsun/{category}:3.1.0", native_shape=None,
                       num_classes=1, manual_files=files, download_url=url, kind="lsun",
                       crop="center_short_side", homepage=url, channels=3)


def parts(name: str) -> list[DatasetSpec]:
    """The datasets behind `name`: one, or the classes of an A+B combination."""
    if isinstance(name, str) and "+" in name and not name.startswith(_FOLDER_PREFIX):
        names = name.split("+")
        if any(n.startswith(_FOLDER_PREFIX) for n in names):
            raise DatasetError(f"{name!r}: folder datasets cannot be combined with '+'.")
        if len(set(names)) != len(names) or any("+" in n for n in names):
            raise DatasetError(f"{name!r}: each dataset may appear once in a combination.")
        specs = [spec(n) for n in names]
        if len({s.channels for s in specs}) != 1:
            raise DatasetError(f"{name!r} combines datasets with different channel counts.")
        return specs
    return [spec(name)]


def is_supported(name: str) -> bool:
    """Whether `name` names a dataset (see the module docstring for the forms)."""
    try:
        parts(name)
    except DatasetError:
        return False
    return True


def default_data_dir() -> str:
    """$TFDS_DATA_DIR, else ~/tensorflow_datasets (the same default as TFDS)."""
    return os.path.abspath(os.path.expanduser(
        os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"))


def default_manual_dir(data_dir: str | None = None) -> str:
    """TFDS's default manual dir for `data_dir`: <data_dir>/downloads/manual."""
    return os.path.join(_resolve_data_dir(data_dir), "downloads", "manual")


def _resolve_data_dir(data_dir: str | None) -> str:
    return os.path.abspath(os.path.expanduser(data_dir)) if data_dir else default_data_dir()


def _tfds_is_mocked() -> bool:
    """True inside ``tfds.testing.mock_data``.

    mock_data always replaces DatasetBuilder.__init__ and
    DatasetBuilder.download_and_prepare with functions defined in its own
    module, so we look at where those come from.  If the mocking module was
    never imported, mock_data cannot be active (and we avoid importing TFDS).
    """
    mocking = sys.modules.get("tensorflow_datasets.testing.mocking")
    if mocking is None:
        return False
    from tensorflow_datasets.core import dataset_builder  # pylint: disable=g-import-not-at-top
    cls = dataset_builder.DatasetBuilder
    return any(getattr(fn, "__module__", None) == mocking.__name__
               for fn in (cls.__init__, cls.download_and_prepare))


def is_prepared(name: str, data_dir: str | None = None) -> bool:
    """Whether `name` is prepared in `data_dir` in the array_record format.

    Imports tensorflow_datasets (not TensorFlow).
    """
    s = spec(name)
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    builder = tfds.builder(s.tfds_name, data_dir=_resolve_data_dir(data_dir),
                           file_format="array_record")
    if not builder.is_prepared():
        return False
    formats = {str(getattr(f, "value", f)) for f in builder.info.available_file_formats()}
    return "array_record" in formats


# ----------------------------------------------------------------------------
# Preparation (may import TensorFlow: run it in a subprocess from training).


def prepare(name: str, data_dir: str | None = None, manual_dir: str | None = None,
            *, debian_dir: str | None = None) -> None:
    """Downloads/converts `name` into `data_dir` as array_record, once.

    Idempotent: returns at once when already prepared.  For fashion_mnist with
    the four source files not all in `manual_dir` (default
    <data_dir>/downloads/manual), they are restored from Debian's
    dataset-fashion-mnist package when its directory exists (`debian_dir`, else
    $IGAN_FASHION_MNIST_DEBIAN_DIR, else /usr/share/datasets/fashion-mnist).
    TFDS takes files found in the manual dir instead of downloading them.
    Raises DatasetError (with the fix) when the files can be neither found nor
    downloaded, or do not match TFDS's registered checksums.
    """
    s = spec(name)
    if _tfds_is_mocked():
        return
    data_dir = _resolve_data_dir(data_dir)
    if s.kind in ("lsun", "folder"):
        # Not TFDS datasets: nothing to convert before the images are
        # prepared (`prepare_images`); check that the sources are there.
        _check_sources(s, data_dir, manual_dir)
        return
    if is_prepared(name, data_dir):
        _log.info("%s is already prepared in %s", name, data_dir)
        return
    manual_dir = os.path.abspath(os.path.expanduser(manual_dir or default_manual_dir(data_dir)))
    # Several runs started at once on a fresh data dir would otherwise all
    # generate the dataset and race on TFDS's final rename; the first one
    # prepares, the others wait and then find it prepared.
    with _lock(os.path.join(data_dir, _CACHE_SUBDIR, f".prepare-{name}.lock")):
        if is_prepared(name, data_dir):
            _log.info("%s was prepared in %s by another process", name, data_dir)
            return
        _prepare_locked(s, data_dir, manual_dir, debian_dir)


def _check_sources(s: DatasetSpec, data_dir: str, manual_dir: str | None,
                   splits: list[str] | None = None) -> None:
    """DatasetError unless the files an LSUN or folder dataset is made from exist."""
    if s.kind == "lsun":
        from igan_jax.data import lsun  # pylint: disable=g-import-not-at-top
        manual_dir = os.path.abspath(os.path.expanduser(manual_dir or default_manual_dir(data_dir)))
        if splits is None:
            splits = ["train", "validation"] if len(s.manual_files) == 2 else ["train"]
        lsun.check_archives(s.name, s.name[len(_LSUN_PREFIX):], splits, manual_dir)
    elif s.kind == "folder":
        from igan_jax.data import folder  # pylint: disable=g-import-not-at-top
        root = folder.folder_path(s.name)
        if not folder.list_files(root):
            raise DatasetError(f"Folder dataset {root} contains no files (hidden files and "
                               f"directories are ignored); put images (jpg, png, ...) in it.")


@contextlib.contextmanager
def _lock(path: str):
    """An exclusive advisory lock (flock) on `path`, held for the `with` body."""
    import fcntl  # pylint: disable=g-import-not-at-top  (POSIX only, like TFDS's array_record)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _prepare_locked(s: DatasetSpec, data_dir: str, manual_dir: str,
                    debian_dir: str | None) -> None:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    builder = tfds.builder(s.tfds_name, data_dir=data_dir, file_format="array_record")
    if builder.is_prepared():
        # Prepared, but not as array_record (else is_prepared() said so):
        # download_and_prepare would just reuse it and we could not read it.
        formats = ", ".join(str(getattr(f, "value", f))
                            for f in builder.info.available_file_formats()) or "unknown"
        raise DatasetError(
            f"{s.name} is already prepared in {builder.data_dir} but in another format "
            f"({formats}); igan_jax reads array_record without TensorFlow. Delete "
            f"{builder.data_dir} (or use another data_dir) and prepare again.")

    if s.name == "fashion_mnist":
        _fill_fashion_mnist_from_debian(manual_dir, debian_dir)

    missing = [f for f in s.manual_files if not os.path.isfile(os.path.join(manual_dir, f))]
    if missing:
        unreachable = _unreachable(s.download_url)
        if unreachable:
            raise DatasetError(_prepare_failure_message(s, manual_dir, "network", unreachable,
                                                        missing))

    _log.info("preparing %s in %s (manual dir %s)", s.name, data_dir, manual_dir)
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except Exception as e:  # pylint: disable=broad-except
        kind = _classify_prepare_error(e)
        if kind is None:
            raise
        detail = f"{type(e).__name__}: {_one_line(str(e))}"
        raise DatasetError(_prepare_failure_message(s, manual_dir, kind, detail)) from e
    _log.info("prepared %s in %s", s.name, builder.data_dir)


def _fill_fashion_mnist_from_debian(manual_dir: str, debian_dir: str | None) -> None:
    from igan_jax.data import fashion_mnist_offline  # pylint: disable=g-import-not-at-top
    debian_dir = (debian_dir or os.environ.get("IGAN_FASHION_MNIST_DEBIAN_DIR")
                  or fashion_mnist_offline.DEBIAN_DIR)
    present = all(os.path.isfile(os.path.join(manual_dir, f))
                  for f in fashion_mnist_offline.EXPECTED)
    if present or not os.path.isdir(debian_dir):
        # Files the user put there are checked by TFDS itself; without Debian's
        # copy TFDS downloads what is missing.
        return
    written = fashion_mnist_offline.fill_manual_dir(manual_dir, debian_dir)
    for path in written:
        _log.info("restored %s from %s", path, debian_dir)


def _unreachable(url: str, timeout: float = 10.0) -> str | None:
    """Why a plain TCP connect to `url`'s host fails, or None if it connects.

    TFDS's downloader retries a failed request 10 times with exponential
    backoff (~3.5 min in all, even when DNS fails at once), so without network
    we would make the user wait minutes for an error we can see in
    milliseconds.  Behind a proxy a direct connect proves nothing, so we then
    leave it to TFDS.
    """
    import socket  # pylint: disable=g-import-not-at-top
    import urllib.parse  # pylint: disable=g-import-not-at-top
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY",
                                       "http_proxy", "ALL_PROXY", "all_proxy")):
        return None
    parsed = urllib.parse.urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as e:
        return f"cannot connect to {parsed.hostname}:{port}: {type(e).__name__}: {e}"
    return None


def _one_line(text: str, limit: int = 600) -> str:
    """`text` with its whitespace collapsed, cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _exception_chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _classify_prepare_error(e: BaseException) -> str | None:
    """'checksum', 'network' or None (an error we should not paper over)."""
    import socket  # pylint: disable=g-import-not-at-top
    for err in _exception_chain(e):
        name = type(err).__name__
        if "Checksum" in name:  # tfds.download.NonMatchingChecksumError
            return "checksum"
        if isinstance(err, (ConnectionError, TimeoutError, socket.gaierror)):
            return "network"
        module = type(err).__module__ or ""
        if module.startswith(("requests", "urllib3", "urllib.error", "http.client")):
            return "network"
        if "DownloadError" in name:
            return "network"
    return None


def _prepare_failure_message(s: DatasetSpec, manual_dir: str, kind: str, detail: str,
                             missing: list[str] | None = None) -> str:
    """One paragraph: what failed, and which files to put where."""
    put = (f"put the {len(s.manual_files)} original files {', '.join(s.manual_files)} "
           f"(from {s.homepage or s.download_url}) into {manual_dir}")
    if s.name == "fashion_mnist":
        put += (", or install Debian's package dataset-fashion-mnist (its files are "
                "restored into the manual dir automatically)")
    if kind == "checksum":
        return (f"Cannot prepare {s.name}: a source file does not match the checksum "
                f"TFDS registered ({detail}). Delete the wrong file from {manual_dir} "
                f"(or from {os.path.dirname(manual_dir)}), {put}, and run it again.")
    if missing and len(missing) < len(s.manual_files):
        what = f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing from"
    else:
        what = "its source files are not in"
    return (f"Cannot prepare {s.name}: {what} the manual dir {manual_dir} and cannot be "
            f"downloaded ({detail}). Without network access, {put}, and run it again.")


# ----------------------------------------------------------------------------
# Loading (never imports TensorFlow).


def load_images(name: str, split: str = "train", data_dir: str | None = None,
                resolution: int | None = None, prepare_if_missing: bool = True, *,
                manual_dir: str | None = None, label_attribute: str | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, H, W, C) and labels int32 (N,) of one split.

    mnist/fashion_mnist: resolution None or the native size returns the images
    as stored; another size resizes every image once (see `_resize`).  The
    result is cached under <data_dir>/igan_jax_cache/; a corrupt or stale cache
    is deleted and rebuilt.  When the dataset is not prepared and
    `prepare_if_missing`, preparation runs in a subprocess so that this process
    never imports TensorFlow.

    celeb_a, lsun/<category>, folder:/path and A+B combinations: see
    `igan_jax.data.image_datasets.load_images` (prepared once into shards,
    resolution None = 96, all in memory: DatasetError when larger than 80% of
    the machine's RAM; stream those with `stream_batches`).  `manual_dir`
    (default <data_dir>/downloads/manual) is where the original files are;
    `label_attribute` picks the CelebA attribute used as label (default Male).
    """
    specs = parts(name)
    if len(specs) > 1 or specs[0].kind != "tfds" or label_attribute is not None:
        from igan_jax.data import image_datasets  # pylint: disable=g-import-not-at-top
        return image_datasets.load_images(name, split, data_dir, resolution, prepare_if_missing,
                                          manual_dir=manual_dir,
                                          label_attribute=label_attribute)
    s = specs[0]
    data_dir = _resolve_data_dir(data_dir)
    res = _resolve_resolution(s, resolution)

    if _tfds_is_mocked():
        images, labels = _read_tfds(s, split, data_dir, mocked=True)
        return _resize(images, res), labels

    recipe = _recipe(s, split, res)
    path = _cache_path(data_dir, s, split, res)
    cached = _read_cache(path, recipe)
    if cached is not None:
        return cached

    if s.native_shape is not None and res != s.native_shape[0]:
        # Resize from the (cached) native arrays, so each resolution costs one
        # decode of the TFDS data at most.
        images, labels = load_images(name, split, data_dir, None, prepare_if_missing,
                                     manual_dir=manual_dir)
    else:
        if not is_prepared(name, data_dir):
            if not prepare_if_missing:
                raise DatasetError(
                    f"Dataset {name} is not prepared in {data_dir}; run `{sys.executable} "
                    f"-m {_PREPARE_PROG} --dataset={name} --data_dir={data_dir}` first.")
            _prepare_in_subprocess(name, data_dir, manual_dir)
        images, labels = _read_tfds(s, split, data_dir)
    images = _resize(images, res)
    _write_cache(path, images, labels, recipe)
    return images, labels


def _resolve_resolution(s: DatasetSpec, resolution: int | None) -> int:
    if resolution is None and s.kind != "tfds":
        return DEFAULT_RESOLUTION
    if resolution is None:
        if s.native_shape is None:
            raise DatasetError(f"Dataset {s.name} has no native resolution; pass resolution=.")
        return s.native_shape[0]
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) \
            or resolution < 1:
        raise DatasetError(f"resolution must be a positive int or None, got {resolution!r}.")
    return int(resolution)


def _read_tfds(s: DatasetSpec, split: str, data_dir: str, mocked: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
    """Decodes a whole split through tfds.data_source (no TensorFlow).

    Batched __getitems__ reads are what make the real read fast, but TFDS
    4.9's mock_data sets __getitems__ on its MagicMock as a plain attribute
    (MagicMock does not know that dunder), so the mock's own self is never
    passed and the call fails; under the mock we read one example at a time.
    """
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    try:
        source = tfds.data_source(s.tfds_name, split=split, data_dir=data_dir,
                                  download=False,
                                  builder_kwargs={"file_format": "array_record"})
    except Exception as e:  # pylint: disable=broad-except
        raise DatasetError(
            f"Cannot read split {split!r} of {s.name} from {data_dir} "
            f"({type(e).__name__}: {_one_line(str(e))}); "
            f"check the split name (e.g. 'train', 'test') or re-run "
            f"`python -m {_PREPARE_PROG} --dataset={s.name} --data_dir={data_dir}`.") from e
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


def _resize(images: np.ndarray, res: int) -> np.ndarray:
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
    from PIL import Image  # pylint: disable=g-import-not-at-top
    out = np.empty((n, res, res, c), np.uint8)
    for i in range(n):
        img = Image.fromarray(images[i, :, :, 0] if c == 1 else images[i])
        out[i] = np.asarray(img.resize((res, res), Image.Resampling.BICUBIC)).reshape(res, res, c)
    return out


# ----------------------------------------------------------------------------
# The .npz cache.


def _recipe(s: DatasetSpec, split: str, res: int) -> dict:
    """What the cached arrays are; a cache whose recipe differs is rebuilt."""
    native = s.native_shape[0] if s.native_shape else None
    if res == native:
        resize = "none"
    else:
        resize = ("PIL.Image.resize BICUBIC, per image, uint8 in/out; antialias "
                  + ("off (upsampling)" if native and res > native else "on (downsampling)"))
    return {"format": _CACHE_FORMAT, "dataset": s.name, "tfds_name": s.tfds_name,
            "split": split, "resolution": res, "resize": resize}


def _safe_tag(text: str) -> str:
    """`text` as a file-name part; distinct texts stay distinct."""
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
    if tag != text:  # e.g. "train[:10%]": keep distinct splits distinct
        tag += "_" + hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return tag


def _cache_path(data_dir: str, s: DatasetSpec, split: str, res: int) -> str:
    return os.path.join(data_dir, _CACHE_SUBDIR, f"{s.name}-{_safe_tag(split)}-{res}.npz")


def _read_cache(path: str, recipe: dict) -> tuple[np.ndarray, np.ndarray] | None:
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


def _write_cache(path: str, images: np.ndarray, labels: np.ndarray, recipe: dict) -> None:
    """Writes atomically (temp file + os.replace): readers see all or nothing."""
    import PIL  # pylint: disable=g-import-not-at-top
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


# ----------------------------------------------------------------------------
# Preparation from a training process: in a subprocess.


def _prepare_in_subprocess(name: str, data_dir: str, manual_dir: str | None = None) -> None:
    """Runs `python -m igan_jax.data.prepare` and relays its DatasetError."""
    # The package root goes first on PYTHONPATH so the child imports this same
    # igan_jax whether or not it is installed.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", _PREPARE_PROG, f"--dataset={name}", f"--data_dir={data_dir}",
           "--tfds_only"]
    if manual_dir:
        cmd.append(f"--manual_dir={manual_dir}")
    print(f"igan_jax.data: {name} is not prepared in {data_dir}; preparing it once "
          f"in a subprocess: {' '.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, check=False)
    for line in proc.stdout.splitlines():  # the CLI's short summary of what it did
        print(f"  {line}", file=sys.stderr)
    if proc.returncode == 0:
        return
    err_lines = proc.stderr.splitlines()
    if proc.returncode == 2:
        for line in reversed(err_lines):
            if line.startswith(_ERROR_PREFIX):
                raise DatasetError(line[len(_ERROR_PREFIX):])
    tail = "\n".join(err_lines[-20:])
    raise DatasetError(
        f"Preparing {name} in a subprocess failed (exit code {proc.returncode}); run "
        f"`{' '.join(cmd)}` to see the full error. Its output ended with:\n{tail}")
