"""Tests for igan_jax.data: offline Fashion-MNIST, preparation, loading, caching, sampling.

The one slow test prepares the real Fashion-MNIST from Debian's package (~1-2
min on 2 cores); everything else uses small synthetic data, TFDS's mock_data,
or error paths that fail within seconds.
"""

import gzip
import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from igan_jax.data import SUPPORTED, DatasetError, default_data_dir, load_images, prepare
from igan_jax.data import fashion_mnist_offline as fmo
from igan_jax.data import core, tfds_arrays, tfds_prepare
from igan_jax.data.sampler import sample_batches, sample_class_batches

REPO = Path(__file__).resolve().parents[1]
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
MNIST_LIKE = ("mnist", "fashion_mnist")  # the 28x28x1 datasets (the others: test_data_large.py)

needs_debian = pytest.mark.skipif(
    not os.path.isdir(fmo.DEBIAN_DIR),
    reason=f"Debian's dataset-fashion-mnist is not installed ({fmo.DEBIAN_DIR} absent)")


def _subprocess_env():
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
  return env


def _run_cli(*args):
  return subprocess.run([sys.executable, "-m", "igan_jax.data.prepare", *args],
                        cwd=REPO, env=_subprocess_env(), capture_output=True, text=True,
                        timeout=300)


def _offline_or_skip(url):
  if tfds_prepare.unreachable(url) is None:
    pytest.skip(f"network reaches {url}; this test needs it unreachable")


# --------------------------------------------------------------------------
# Registry, names, errors.


def test_supported_names():
  assert SUPPORTED == ("mnist", "fashion_mnist", "celeb_a", "lsun/bedroom")


@pytest.mark.parametrize("fn", [
    lambda: load_images("cifar10"),
    lambda: prepare("cifar10"),
    lambda: tfds_prepare.is_prepared("cifar10"),
])
def test_unknown_dataset_lists_supported(fn):
  with pytest.raises(DatasetError) as e:
    fn()
  assert "cifar10" in str(e.value)
  assert "mnist" in str(e.value) and "fashion_mnist" in str(e.value)


@pytest.mark.parametrize("name", ["celeb_a", "lsun/bedroom"])
def test_paper_datasets_are_supported(name):
  s = core.spec(name)
  assert s.name == name and s.channels == 3 and s.kind != "tfds"


@pytest.mark.parametrize("resolution", [0, -3, 2.5, "96", True])
def test_bad_resolution(resolution, tmp_path):
  with pytest.raises(DatasetError, match="resolution"):
    load_images("mnist", data_dir=str(tmp_path), resolution=resolution)


def test_default_data_dir(monkeypatch, tmp_path):
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  assert default_data_dir() == str(tmp_path)
  monkeypatch.delenv("TFDS_DATA_DIR")
  assert default_data_dir() == os.path.expanduser("~/tensorflow_datasets")


def _tfds_checksums(name):
  import tensorflow_datasets as tfds
  path = Path(tfds.__file__).parent / "url_checksums" / f"{name}.txt"
  rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
  return {filename: (url, int(size), sha) for url, size, sha, filename in rows}


@pytest.mark.parametrize("name", MNIST_LIKE)
def test_registry_matches_tfds_checksums(name):
  registered = _tfds_checksums(name)
  s = core.spec(name)
  assert sorted(s.manual_files) == sorted(registered)
  for filename, (url, size, sha) in registered.items():
    assert url == s.download_url + filename
    if name == "fashion_mnist":
      assert fmo.EXPECTED[filename] == (size, sha)


# --------------------------------------------------------------------------
# Gzip header restoration (offline Fashion-MNIST).


def _gzip_with_all_header_fields(payload):
  comp = zlib.compressobj(9, zlib.DEFLATED, -15)
  body = comp.compress(payload) + comp.flush()
  flags = 2 | 4 | 8 | 16  # FHCRC FEXTRA FNAME FCOMMENT
  header = (b"\x1f\x8b\x08" + bytes([flags]) + struct.pack("<I", 7) + b"\x02\xff"
            + struct.pack("<H", 4) + b"ab\x00d" + b"other.bin\0" + b"a comment\0")
  header += struct.pack("<H", zlib.crc32(header) & 0xFFFF)
  trailer = struct.pack("<II", zlib.crc32(payload), len(payload))
  return header + body + trailer


def test_restore_gzip_header_skips_optional_fields():
  payload = b"fashion" * 1000
  data = _gzip_with_all_header_fields(payload)
  assert gzip.decompress(data) == payload
  out = fmo.restore_gzip_header(data, "train-labels-idx1-ubyte.gz", 1504176606)
  assert out[:4] == b"\x1f\x8b\x08\x08"
  assert struct.unpack_from("<I", out, 4)[0] == 1504176606
  assert out[8] == data[8] and out[9] == 3
  assert out[10:].startswith(b"train-labels-idx1-ubyte\0")
  assert gzip.decompress(out) == payload


@pytest.mark.parametrize("data", [b"", b"not a gzip file at all",
                                  b"\x1f\x8b\x08\x08" + b"\0" * 6 + b"noterminator"])
def test_restore_gzip_header_rejects_bad_input(data):
  with pytest.raises(DatasetError):
    fmo.restore_gzip_header(data, "x.gz", 0)


@needs_debian
@pytest.mark.parametrize("filename", sorted(fmo.EXPECTED))
def test_restore_gzip_header_on_debian_files_gives_registered_sha256(filename):
  with open(os.path.join(fmo.DEBIAN_DIR, filename), "rb") as f:
    orig = f.read()
  mtime = fmo.ORIGINAL_MTIME[filename.split("-")[0]]
  out = fmo.restore_gzip_header(orig, filename, mtime)
  assert (len(out), hashlib.sha256(out).hexdigest()) == fmo.EXPECTED[filename]


@needs_debian
def test_fill_manual_dir_is_verified_and_idempotent(tmp_path):
  manual = tmp_path / "manual"
  written = fmo.fill_manual_dir(str(manual))
  assert sorted(os.path.basename(p) for p in written) == sorted(fmo.EXPECTED)
  for filename, (size, sha) in fmo.EXPECTED.items():
    data = (manual / filename).read_bytes()
    assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha)
  assert fmo.fill_manual_dir(str(manual)) == []
  assert not [p for p in os.listdir(manual) if p.startswith(".tmp")]


@needs_debian
def test_fill_manual_dir_rejects_tampered_file(tmp_path):
  debian = tmp_path / "debian"
  debian.mkdir()
  for filename in fmo.EXPECTED:
    os.symlink(os.path.join(fmo.DEBIAN_DIR, filename), debian / filename)
  victim = "t10k-labels-idx1-ubyte.gz"
  data = bytearray((Path(fmo.DEBIAN_DIR) / victim).read_bytes())
  data[len(data) // 2] ^= 0xFF
  (debian / victim).unlink()
  (debian / victim).write_bytes(bytes(data))
  manual = tmp_path / "manual"
  with pytest.raises(DatasetError, match=f"{victim}.*sha256"):
    fmo.fill_manual_dir(str(manual), str(debian))
  assert not (manual / victim).exists()


@needs_debian
def test_debian_dir_env_override(tmp_path, monkeypatch):
  manual = tmp_path / "manual"
  monkeypatch.setenv("IGAN_FASHION_MNIST_DEBIAN_DIR", str(tmp_path / "absent"))
  fmo.fill_from_debian(str(manual))  # no Debian dir: TFDS downloads
  assert not manual.exists()
  debian = tmp_path / "debian"
  debian.mkdir()
  for filename in fmo.EXPECTED:
    os.symlink(os.path.join(fmo.DEBIAN_DIR, filename), debian / filename)
  monkeypatch.setenv("IGAN_FASHION_MNIST_DEBIAN_DIR", str(debian))
  fmo.fill_from_debian(str(manual))
  assert sorted(os.listdir(manual)) == sorted(fmo.EXPECTED)


def test_fill_manual_dir_missing_debian_files(tmp_path):
  with pytest.raises(DatasetError, match="dataset-fashion-mnist"):
    fmo.fill_manual_dir(str(tmp_path / "manual"), str(tmp_path / "no-debian"))


# --------------------------------------------------------------------------
# load_images under tfds.testing.mock_data: in-process, nothing written.


@pytest.mark.parametrize("name", MNIST_LIKE)
def test_load_images_under_mock_data(name, tmp_path):
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=5):
    x, y = load_images(name, "train", data_dir=str(tmp_path))
    assert x.shape == (5, 28, 28, 1) and x.dtype == np.uint8
    assert y.shape == (5,) and y.dtype == np.int32
    assert ((0 <= y) & (y < 10)).all()
    x96, y96 = load_images(name, "test", data_dir=str(tmp_path), resolution=96)
    assert x96.shape == (5, 96, 96, 1) and x96.dtype == np.uint8
    assert x96.std() > 0
    np.testing.assert_array_equal(y96, y)  # the mock yields the same examples per split
  assert list(tmp_path.iterdir()) == []  # no cache written for fake data


def test_mock_data_ignores_a_real_cache_and_leaves_it_alone(tmp_path):
  import tensorflow_datasets as tfds
  real = np.full((3, 28, 28, 1), 7, np.uint8), np.arange(3, dtype=np.int32)
  path = core.cache_path(str(tmp_path), core.spec("mnist"), "train", 28)
  tfds_arrays.write_cache(path, *real, tfds_arrays.cache_recipe(core.spec("mnist"), "train", 28))
  before = Path(path).read_bytes()
  with tfds.testing.mock_data(num_examples=4):
    x, _ = load_images("mnist", "train", data_dir=str(tmp_path))
  assert x.shape == (4, 28, 28, 1)
  assert Path(path).read_bytes() == before
  x, y = load_images("mnist", "train", data_dir=str(tmp_path))  # real run: the cache
  np.testing.assert_array_equal(x, real[0])
  np.testing.assert_array_equal(y, real[1])


# --------------------------------------------------------------------------
# The .npz cache (TFDS replaced by a counting fake reader).


@pytest.fixture
def fake_tfds(monkeypatch):
  """Pretends mnist is prepared; counts how often the TFDS data is decoded."""
  calls = []
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (12, 28, 28, 1), dtype=np.uint8)
  labels = (np.arange(12) % 10).astype(np.int32)

  def read(s, split, data_dir, mocked=False):
    calls.append((s.name, split))
    return images.copy(), labels.copy()

  monkeypatch.setattr(tfds_prepare, "is_prepared", lambda name, data_dir=None: True)
  monkeypatch.setattr(tfds_arrays, "read_tfds", read)
  return calls, images, labels


def test_cache_hit_resize_and_rebuild(fake_tfds, tmp_path, capsys):
  calls, images, labels = fake_tfds
  d = str(tmp_path)
  cache = tmp_path / "igan_jax_cache"

  x, y = load_images("mnist", "train", d)
  np.testing.assert_array_equal(x, images)
  np.testing.assert_array_equal(y, labels)
  assert len(calls) == 1 and (cache / "mnist-train-28.npz").is_file()
  x, y = load_images("mnist", "train", d, 28)  # native resolution = as stored
  assert len(calls) == 1
  np.testing.assert_array_equal(x, images)

  x96, y96 = load_images("mnist", "train", d, 96)  # resized from the native cache
  assert len(calls) == 1 and x96.shape == (12, 96, 96, 1) and x96.dtype == np.uint8
  np.testing.assert_array_equal(y96, labels)
  from PIL import Image
  ref = np.asarray(Image.fromarray(images[3, :, :, 0]).resize((96, 96), Image.Resampling.BICUBIC))
  np.testing.assert_array_equal(x96[3, :, :, 0], ref)
  with np.load(cache / "mnist-train-96.npz") as z:
    recipe = json.loads(str(z["recipe"]))
  assert recipe["resolution"] == 96 and "BICUBIC" in recipe["resize"]
  assert "antialias off" in recipe["resize"]
  assert load_images("mnist", "train", d, 96)[0].shape == (12, 96, 96, 1)
  assert len(calls) == 1

  # A corrupt cache is deleted and rebuilt.
  (cache / "mnist-train-28.npz").write_bytes(b"garbage")
  x, _ = load_images("mnist", "train", d)
  np.testing.assert_array_equal(x, images)
  assert len(calls) == 2
  assert "rebuilding" in capsys.readouterr().err

  # So is one whose recipe differs from what is asked for (e.g. an old format).
  path = str(cache / "mnist-train-28.npz")
  stale = dict(tfds_arrays.cache_recipe(core.spec("mnist"), "train", 28), format=0)
  tfds_arrays.write_cache(path, images, labels, stale)
  load_images("mnist", "train", d)
  assert len(calls) == 3
  assert not [p for p in os.listdir(cache) if p.startswith(".tmp")]


def test_cache_keys_keep_splits_apart(fake_tfds, tmp_path):
  calls, _, _ = fake_tfds
  for split in ("train", "test", "train[:50%]", "train[50%:]"):
    load_images("fashion_mnist", split, str(tmp_path))
  names = sorted(os.listdir(tmp_path / "igan_jax_cache"))
  assert len([n for n in names if n.endswith(".npz")]) == 4 and len(calls) == 4


def test_not_prepared_without_auto_prepare(tmp_path):
  with pytest.raises(DatasetError, match="igan_jax.data.prepare --dataset=mnist"):
    load_images("mnist", data_dir=str(tmp_path), prepare_if_missing=False)


# --------------------------------------------------------------------------
# Preparation failures: one actionable message, relayed from the subprocess.


def test_mnist_offline_without_manual_files_says_what_to_do(tmp_path):
  _offline_or_skip(core.spec("mnist").download_url)
  with pytest.raises(DatasetError) as e:
    load_images("mnist", "train", str(tmp_path))  # prepares in a subprocess
  msg = str(e.value)
  manual = os.path.join(str(tmp_path), "downloads", "manual")
  assert manual in msg
  for filename in MNIST_FILES:
    assert filename in msg
  assert "https://storage.googleapis.com/cvdf-datasets/mnist/" in msg
  assert "\n" not in msg and "Traceback" not in msg


def test_cli_wrong_checksum_exits_2_with_one_line(tmp_path):
  manual = tmp_path / "downloads" / "manual"
  manual.mkdir(parents=True)
  for filename in MNIST_FILES:
    (manual / filename).write_bytes(b"not mnist")
  proc = _run_cli("--dataset=mnist", f"--data_dir={tmp_path}")
  assert proc.returncode == 2, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("igan_jax.data.prepare: error: ")
  assert "checksum" in last and str(manual) in last
  assert "Traceback" not in proc.stderr


def test_cli_unknown_dataset_exits_2(tmp_path):
  proc = _run_cli("--dataset=cifar10", f"--data_dir={tmp_path}")
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("igan_jax.data.prepare: error: ")
  assert "fashion_mnist" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------
# End to end on the real Fashion-MNIST (offline, from Debian's package).


def _read_idx_gz(path):
  with gzip.open(path, "rb") as f:
    data = f.read()
  ndim = data[3]
  dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fingerprints(images, labels):
  """Order-free identity of a split: TFDS shuffles examples when preparing."""
  return sorted(hashlib.sha1(img.tobytes() + bytes([int(lab)])).digest()
                for img, lab in zip(images, labels))


@pytest.mark.slow
@needs_debian
def test_fashion_mnist_offline_end_to_end(tmp_path):
  d = str(tmp_path / "tfds")
  # A fresh "training" process: load_images prepares in its own subprocess
  # (which may import TensorFlow); the caller itself must not.
  script = (
      "import json, sys\n"
      "import numpy as np\n"
      "from igan_jax.data import load_images\n"
      "x, y = load_images('fashion_mnist', 'train', sys.argv[1])\n"
      "print(json.dumps({'shape': x.shape, 'dtype': str(x.dtype), 'ldtype': str(y.dtype),\n"
      "                  'counts': np.bincount(y).tolist(),\n"
      "                  'tf': 'tensorflow' in sys.modules}))\n")
  proc = subprocess.run([sys.executable, "-c", script, d], cwd=REPO, env=_subprocess_env(),
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out == {"shape": [60000, 28, 28, 1], "dtype": "uint8", "ldtype": "int32",
                 "counts": [6000] * 10, "tf": False}
  assert tfds_prepare.is_prepared("fashion_mnist", d)
  prepare("fashion_mnist", data_dir=d)  # idempotent: returns at once

  cache = Path(d) / "igan_jax_cache"
  assert (cache / "fashion_mnist-train-28.npz").is_file()
  x, y = load_images("fashion_mnist", "train", d)  # from the cache
  assert x.shape == (60000, 28, 28, 1) and x.dtype == np.uint8 and y.dtype == np.int32
  assert abs(x.mean() - 72.94) < 0.1  # Fashion-MNIST's known train mean (0.2860 * 255)
  deb = Path(fmo.DEBIAN_DIR)
  assert _fingerprints(x, y) == _fingerprints(
      _read_idx_gz(deb / "train-images-idx3-ubyte.gz"),
      _read_idx_gz(deb / "train-labels-idx1-ubyte.gz"))

  xt, yt = load_images("fashion_mnist", "test", d)  # decoded via tfds.data_source
  assert xt.shape == (10000, 28, 28, 1) and xt.dtype == np.uint8
  assert np.bincount(yt).tolist() == [1000] * 10
  assert _fingerprints(xt, yt) == _fingerprints(
      _read_idx_gz(deb / "t10k-images-idx3-ubyte.gz"),
      _read_idx_gz(deb / "t10k-labels-idx1-ubyte.gz"))

  x96, y96 = load_images("fashion_mnist", "test", d, resolution=96)
  assert x96.shape == (10000, 96, 96, 1) and x96.dtype == np.uint8
  np.testing.assert_array_equal(y96, yt)
  assert (cache / "fashion_mnist-test-96.npz").is_file()


# --------------------------------------------------------------------------
# On-device sampling.


def _toy_images():
  # Image i is filled with value i, so a sample shows which image it came from.
  return jnp.asarray(np.broadcast_to(np.arange(256, dtype=np.uint8)[:, None, None, None],
                                     (256, 4, 3, 2)))


def test_sample_batches_contract():
  images = _toy_images()
  key = jax.random.PRNGKey(0)
  out = sample_batches(images, key, (3, 5))
  assert out.shape == (3, 5, 4, 3, 2) and out.dtype == jnp.float32
  idx = jax.random.randint(key, (3, 5), 0, 256)
  np.testing.assert_allclose(out, np.asarray(images)[np.asarray(idx)] / 127.5 - 1.0,
                             rtol=0, atol=1e-6)
  assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
  np.testing.assert_array_equal(sample_batches(images, key, (3, 5)), out)  # deterministic
  other = sample_batches(images, jax.random.PRNGKey(1), (3, 5))
  assert not np.array_equal(other, out)
  # Usable inside the caller's jit, with a new-style key too.
  f = jax.jit(lambda im, k: sample_batches(im, k, (7,)))
  assert f(images, jax.random.key(3)).shape == (7, 4, 3, 2)


def test_sample_batches_endpoints_and_coverage():
  images = _toy_images()
  out = np.asarray(sample_batches(images, jax.random.PRNGKey(0), (4096,)))
  values = np.unique(out[:, 0, 0, 0])
  assert values.min() == -1.0 and values.max() == 1.0  # 0 -> -1 and 255 -> 1 exactly
  assert len(values) > 240  # uniform over all 256 images (with replacement)


def test_sample_class_batches_balanced():
  # 90 images of class 0 (value 0), 10 of class 1 (value 255).
  labels = jnp.asarray([0] * 90 + [1] * 10)
  images = jnp.asarray(np.where(np.asarray(labels) == 0, 0, 255).astype(np.uint8)
                       [:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8))
  x, y = sample_class_batches(images, labels, jax.random.PRNGKey(0), (2000,), num_classes=2)
  assert x.shape == (2000, 2, 2, 1) and y.shape == (2000,)
  np.testing.assert_array_equal(np.asarray(x[:, 0, 0, 0]), np.where(np.asarray(y) == 0, -1.0, 1.0))
  assert 0.45 < float(y.mean()) < 0.55
