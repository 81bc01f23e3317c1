"""What every dataset backend shares: the error, the names and their specs, paths, the lock.

The leaf of `igan_jax.data`: it imports no other module of the package (nor TFDS), so every
backend (`tfds_prepare`, `tfds_arrays`, `tfds_images`, `lsun`, `folder`, `prepared`,
`fashion_mnist_offline`) and the one dispatcher (`igan_jax.data.datasets`) import it, and
nothing here imports them back.

Dataset names (`is_supported`, `spec`, `parts`):

* ``mnist``, ``fashion_mnist``: 28x28x1, 10 classes, cached as one .npz.
* ``celeb_a``: TFDS's CelebA (prepared with TFDS, may need TensorFlow: in a
  subprocess), then cropped and resized once into a prepared dataset of .npy
  shards (`igan_jax.data.prepared`); labels are the attribute ``Male``
  (1 = Male, 0 = not Male: the two classes of IGAN_V2, `CELEBA_LABEL`), all 40
  attributes are kept (`load_attributes`, ``label_attribute=``).
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
Everything prepared lives under ``<data_dir>/igan_jax_cache/`` (`CACHE_SUBDIR`): the .npz of
mnist/fashion_mnist (`cache_path`) and the shard directories of the others (`prepared_path`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib.util
import os
import re
import sys

import numpy as np

from igan_jax.errors import UserError


class DatasetError(UserError):
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
LSUN_PREFIX = "lsun/"
FOLDER_PREFIX = "folder:"
LSUN_BASE_URL = "http://dl.yf.io/lsun/"

# The paper's datasets.  Also accepted (see is_supported): any lsun/<category>,
# folder:/abs/path, and A+B combinations.
SUPPORTED = ("mnist", "fashion_mnist", "celeb_a", "lsun/bedroom")

CACHE_SUBDIR = "igan_jax_cache"  # under the data dir: every .npz and prepared dataset
PREPARE_PROG = "igan_jax.data.prepare"
ERROR_PREFIX = f"{PREPARE_PROG}: error: "  # how the CLI reports a DatasetError


# ----------------------------------------------------------------------------
# Names and specs.


def spec(name: str) -> DatasetSpec:
  """The spec of one dataset (not an A+B combination); DatasetError if unknown."""
  if not isinstance(name, str):
    raise DatasetError(f"A dataset name is a string, got {name!r}.")
  if name in _REGISTRY:
    return _REGISTRY[name]
  if name.startswith(LSUN_PREFIX):
    return _lsun_spec(name)
  if name.startswith(FOLDER_PREFIX):
    path = folder_path(name)
    return DatasetSpec(name=f"{FOLDER_PREFIX}{path}", tfds_name="", native_shape=None,
                       num_classes=1, manual_files=(), download_url="", kind="folder",
                       crop="center_short_side", channels=3)
  supported = ", ".join(SUPPORTED)
  raise DatasetError(f"Unknown dataset {name!r}; supported datasets: {supported}; also "
                     f"lsun/<category>, folder:/abs/path and A+B (classes 0, 1).")


def _lsun_spec(name: str) -> DatasetSpec:
  category = name[len(LSUN_PREFIX):]
  scenes, objects = lsun_categories()
  if category not in scenes + objects:
    raise DatasetError(f"Unknown LSUN category {category!r} in {name!r}; scenes: "
                       f"{', '.join(scenes)}; objects: {', '.join(objects)}.")
  if category in scenes:
    files = (f"{category}_train_lmdb.zip", f"{category}_val_lmdb.zip")
    url = LSUN_BASE_URL + "scenes/"
  else:
    files, url = (f"{category}.zip",), LSUN_BASE_URL + "objects/"
  return DatasetSpec(name=name, tfds_name=f"lsun/{category}:3.1.0", native_shape=None,
                     num_classes=1, manual_files=files, download_url=url, kind="lsun",
                     crop="center_short_side", homepage=url, channels=3)


def parts(name: str) -> list[DatasetSpec]:
  """The datasets behind `name`: one, or the classes of an A+B combination."""
  if isinstance(name, str) and "+" in name and not name.startswith(FOLDER_PREFIX):
    names = name.split("+")
    if any(n.startswith(FOLDER_PREFIX) for n in names):
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


def resolve_resolution(s: DatasetSpec, resolution: int | None) -> int:
  """The side of the images of `s` at `resolution` (None: native, or 96 for the others)."""
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


def folder_path(name: str) -> str:
  """The absolute folder of a ``folder:/abs/path`` name (normalised)."""
  path = name[len(FOLDER_PREFIX):]
  if not path or not os.path.isabs(os.path.expanduser(path)):
    raise DatasetError(f"Dataset name {name!r}: a folder dataset is named folder:<absolute "
                       f"path>, e.g. folder:/data/faces.")
  return os.path.normpath(os.path.expanduser(path))


def lsun_category(s: DatasetSpec) -> str:
  """The LSUN category of an ``lsun/<category>`` spec."""
  return s.name[len(LSUN_PREFIX):]


# ----------------------------------------------------------------------------
# The LSUN catalogue: which categories and archives TFDS registers (TFDS not imported).


@functools.lru_cache(maxsize=None)
def lsun_registered_files() -> dict[str, tuple[str, int]]:
  """{filename: (url, size)} from TFDS's url_checksums/lsun.txt (TFDS not imported)."""
  tfds_spec = importlib.util.find_spec("tensorflow_datasets")
  if tfds_spec is None or not tfds_spec.submodule_search_locations:
    raise DatasetError("tensorflow_datasets is not installed; it lists the LSUN archives.")
  path = os.path.join(list(tfds_spec.submodule_search_locations)[0], "url_checksums",
                      "lsun.txt")
  out = {}
  with open(path) as f:
    for line in f:
      fields = line.split("\t")
      if len(fields) == 4:
        out[fields[3].strip()] = (fields[0], int(fields[1]))
  return out


def lsun_categories() -> tuple[tuple[str, ...], tuple[str, ...]]:
  """(scene categories, object categories) that TFDS registers archives for."""
  files = lsun_registered_files()
  scenes = sorted(f[:-len("_train_lmdb.zip")] for f in files if f.endswith("_train_lmdb.zip"))
  objects = sorted(f[:-len(".zip")] for f in files if not f.endswith("_lmdb.zip"))
  return tuple(scenes), tuple(objects)


def lsun_archive_name(category: str, split: str) -> str:
  """The manual-dir file that holds `split` of `category` (see `lsun_categories`)."""
  scenes, objects = lsun_categories()
  if category in scenes:
    tag = {"train": "train", "validation": "val"}.get(split)
    if tag is None:
      raise DatasetError(f"lsun/{category} has the splits 'train' and 'validation', "
                         f"not {split!r}.")
    return f"{category}_{tag}_lmdb.zip"
  if category in objects:
    if split != "train":
      raise DatasetError(f"lsun/{category} (an object category) has only the split "
                         f"'train', not {split!r}.")
    return f"{category}.zip"
  raise DatasetError(f"Unknown LSUN category {category!r}; scenes: {', '.join(scenes)}; "
                     f"objects: {', '.join(objects)}.")


# ----------------------------------------------------------------------------
# Where things are.


def default_data_dir() -> str:
  """$TFDS_DATA_DIR, else ~/tensorflow_datasets (the same default as TFDS)."""
  return os.path.abspath(os.path.expanduser(
      os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"))


def resolve_data_dir(data_dir: str | None) -> str:
  """`data_dir` made absolute, or `default_data_dir()` when None or empty."""
  return os.path.abspath(os.path.expanduser(data_dir)) if data_dir else default_data_dir()


def default_manual_dir(data_dir: str | None = None) -> str:
  """TFDS's default manual dir for `data_dir`: <data_dir>/downloads/manual."""
  return os.path.join(resolve_data_dir(data_dir), "downloads", "manual")


def resolve_manual_dir(manual_dir: str | None, data_dir: str | None) -> str:
  """`manual_dir` made absolute, or the default manual dir of `data_dir`."""
  return os.path.abspath(os.path.expanduser(manual_dir or default_manual_dir(data_dir)))


def safe_tag(text: str) -> str:
  """`text` as a file-name part; distinct texts stay distinct."""
  tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
  if tag != text:  # e.g. "train[:10%]": keep distinct splits distinct
    tag += "_" + hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]
  return tag


def cache_path(data_dir: str, s: DatasetSpec, split: str, res: int) -> str:
  """<data_dir>/igan_jax_cache/<name>-<split>-<res>.npz: a whole mnist-like split."""
  return os.path.join(data_dir, CACHE_SUBDIR, f"{s.name}-{safe_tag(split)}-{res}.npz")


def prepared_path(data_dir: str, s: DatasetSpec, split: str, res: int) -> str:
  """<data_dir>/igan_jax_cache/<tag>-<split>-<res>/ for a prepared dataset."""
  if s.kind == "folder":
    root = s.name[len(FOLDER_PREFIX):]
    base = os.path.basename(root.rstrip("/")) or "root"
    tag = (f"folder_{safe_tag(base)}_"
           f"{hashlib.sha1(root.encode('utf-8', 'surrogateescape')).hexdigest()[:10]}")
  else:
    tag = s.name.replace("/", "_")
  return os.path.join(data_dir, CACHE_SUBDIR, f"{tag}-{safe_tag(split)}-{res}")


def prepare_command(name: str, data_dir: str, split: str | None = None,
                    resolution: int | None = None) -> str:
  """The command line that prepares `name` (what an error message tells the user to run)."""
  options = "".join(f" --{flag}={value}" for flag, value in
                    (("split", split), ("resolution", resolution)) if value is not None)
  return (f"{sys.executable} -m {PREPARE_PROG} --dataset={name}{options} "
          f"--data_dir={data_dir}")


# ----------------------------------------------------------------------------
# Shared helpers.


def tfds_is_mocked() -> bool:
  """True inside ``tfds.testing.mock_data``.

  mock_data always replaces DatasetBuilder.__init__ and
  DatasetBuilder.download_and_prepare with functions defined in its own
  module, so we look at where those come from.  If the mocking module was
  never imported, mock_data cannot be active (and we avoid importing TFDS);
  when it was, it has imported the builder module too.
  """
  mocking = sys.modules.get("tensorflow_datasets.testing.mocking")
  if mocking is None:
    return False
  cls = sys.modules["tensorflow_datasets.core.dataset_builder"].DatasetBuilder
  return any(getattr(fn, "__module__", None) == mocking.__name__
             for fn in (cls.__init__, cls.download_and_prepare))


@contextlib.contextmanager
def file_lock(path: str):
  """An exclusive advisory lock (flock) on `path`, held for the `with` body.

  POSIX only (fcntl), like TFDS's array_record reader that training depends on anyway.
  """
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def one_line(text: str, limit: int = 600) -> str:
  """`text` with its whitespace collapsed, cut to `limit` characters."""
  text = " ".join(text.split())
  return text if len(text) <= limit else text[:limit - 3] + "..."
