"""Building blocks shared by the generators and discriminators.

All modules are NHWC. `PatchUpsample` is a transposed convolution whose kernel equals its
stride, written as one matrix product (the 4→96 shortcut and 24→96 branch of IGAN, R);
`SubPixelConvTranspose` and `StridedConv` are the stride-2 (transposed) convolutions written as
stride-1 convolutions plus depth-to-space / space-to-depth, and `Dropout` draws its mask with
XLA's own random-bit generator. Each computes the same function as the plain layer (pinned by
tests) and exists because it is measurably faster on XLA:CPU (numbers in each docstring).
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

LEAKY_SLOPE = 0.2  # Reconstruction: the paper names LeakyReLU without its slope; 0.2 as in DCGAN.
NORMS = ("batch", "layer", "none")


def pixel_shuffle(x: jnp.ndarray, r: int) -> jnp.ndarray:
  """Depth-to-space: (B, H, W, r·r·C) → (B, H·r, W·r, C), channels ordered (r, r, C)."""
  b, h, w, c = x.shape
  c_out = c // (r * r)
  x = x.reshape(b, h, w, r, r, c_out)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * r, w * r, c_out)


class PatchUpsample(nn.Module):
  """Transposed convolution with kernel = stride = `factor` ("VALID"), as one matmul.

  Each input pixel is mapped independently to a factor×factor×features output patch, so the op
  is exactly `x @ W` followed by a reshape; nothing overlaps. This equals
  `nn.ConvTranspose(features, (factor, factor), strides=(factor, factor), padding="VALID")`
  (pinned by a test) and on XLA:CPU runs faster than the generic transposed convolution
  (the PyTorch reference measured the same trick).
  """
  features: int
  factor: int
  use_bias: bool = True
  dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x):
    b, h, w, _ = x.shape
    r = self.factor
    y = nn.Dense(r * r * self.features, use_bias=False, dtype=self.dtype, name="kernel",
                 kernel_init=self.kernel_init)(x)
    y = y.reshape(b, h, w, r, r, self.features).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(b, h * r, w * r, self.features)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
    return y


class ResizeConv(nn.Module):
  """Bilinear up-sampling by `factor`, then a 3×3 convolution ("resize-convolution", Odena,
  Dumoulin & Olah 2016, "Deconvolution and checkerboard artifacts"): the same weights at every
  output position, so unlike a transposed convolution it cannot paint a period-`factor`
  pattern of its own. Its parameters are those of a 3×3 `nn.Conv` ("kernel" HWIO, "bias"), held
  by this module itself."""
  features: int
  factor: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, c, self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    x = jax.image.resize(x, (b, h * self.factor, w * self.factor, c), "bilinear")
    y = jax.lax.conv_general_dilated(x.astype(self.dtype), kernel.astype(self.dtype), (1, 1),
                                     "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias.astype(y.dtype)


def stride2_conv_transpose(x: jnp.ndarray, kernel: jnp.ndarray, pad_lo) -> jnp.ndarray:
  """`lax.conv_transpose(x, kernel, (2, 2), padding)` for paddings that double the size, as one
  stride-1 convolution to 4·Cout channels + depth-to-space (sub-pixel convolution).

  Per axis, lax's transposed convolution correlates the kernel with the zero-dilated input
  padded by `pad_lo` in front: y[o] = Σ_t xd[o + t − pad_lo]·w[t], xd[2i] = x[i] and 0 between.
  Output phase a (o = 2m + a) reads only the taps t with a + t − pad_lo even, each from
  x[m + d], d = (a + t − pad_lo)/2; the four phases' taps, placed at their offsets d, form one
  stride-1 kernel, and pixel_shuffle interleaves the phases. kernel: HWIO; pad_lo: per axis
  (lax's "SAME" gives ⌈(k + 2 − 2)/2⌉ for k > 1, e.g. 3 for k = 5); output (B, 2H, 2W, Cout).
  """
  cin, cout = kernel.shape[2:]
  axes = []
  for k, lo in zip(kernel.shape[:2], pad_lo):
    taps = {(a, (a + t - lo) // 2): t for a in (0, 1) for t in range(k) if (a + t - lo) % 2 == 0}
    d_min, d_max = min(d for _, d in taps), max(d for _, d in taps)
    axes.append((taps, d_min, d_max))
  (th, h0, h1), (tw, w0, w1) = axes
  zero = jnp.zeros((cin, cout), kernel.dtype)
  # Kernel (dh, dw, Cin, (a, b, Cout)): phases ordered (a, b, C) as pixel_shuffle expects.
  k = jnp.stack([jnp.stack([jnp.concatenate([
      kernel[th[a, dh], tw[b, dw]] if (a, dh) in th and (b, dw) in tw else zero
      for a in (0, 1) for b in (0, 1)], axis=-1) for dw in range(w0, w1 + 1)])
      for dh in range(h0, h1 + 1)])
  y = jax.lax.conv_general_dilated(x, k, (1, 1), ((-h0, h1), (-w0, w1)),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return pixel_shuffle(y, 2)


class _Stride2Layer(nn.Module):
  """Fields and parameters ("kernel" HWIO, "bias": nn.Conv's and nn.ConvTranspose's names) of
  the three stride-2 rewrites below, so that each loads the plain layer's parameters."""
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  use_bias: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()

  def _apply(self, x, fn):
    """fn(x, kernel) in self.dtype, plus the bias; called from a compact __call__."""
    kernel = self.param("kernel", self.kernel_init,
                        tuple(self.kernel_size) + (x.shape[-1], self.features), self.param_dtype)
    y = fn(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
      y = y + bias.astype(y.dtype)
    return y


class SubPixelConvTranspose(_Stride2Layer):
  """3×3 transposed convolution with stride 2, computed as a 2×2 convolution + depth-to-space.

  Same function as PyTorch's `ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)`
  (the yardstick's layer; output = 2× input): per axis, with kernel taps w[0..2],
      y[2m] = x[m]·w[1],      y[2m + 1] = x[m]·w[2] + x[m + 1]·w[0]   (x[H] = 0),
  i.e. `stride2_conv_transpose` of the spatially flipped kernel with pad_lo = 1. The parameter
  is the ordinary 3×3 kernel (HWIO). Why: XLA:CPU runs the transposed convolution as a
  convolution over a zero-dilated input, which measured several times slower (forward and
  backward) than this dense form; the result is the same (pinned by a test).
  """

  @nn.compact
  def __call__(self, x):
    if tuple(self.kernel_size) != (3, 3):  # the formulas above are PyTorch's for k = 3
      raise ValueError(f"SubPixelConvTranspose is 3×3, got kernel_size={self.kernel_size}")
    return self._apply(x, lambda x, w: stride2_conv_transpose(x, w[::-1, ::-1], (1, 1)))


class Stride2ConvTranspose(_Stride2Layer):
  """`nn.ConvTranspose(features, kernel_size, strides=(2, 2), padding="SAME")` — same
  parameters, names and function — computed by `stride2_conv_transpose`.

  Why: the DCGAN / WGAN-GP generators' 5×5 transposed convolutions; XLA:CPU runs a transposed
  convolution as a convolution over the zero-dilated input (3/4 of its multiply-adds on zeros,
  and a slow path in the backward pass).
  """
  kernel_size: tuple[int, int] = (5, 5)

  @nn.compact
  def __call__(self, x):
    # lax.conv_transpose's "SAME" front padding for stride 2 (jax.lax._conv_transpose_padding).
    pad_lo = tuple(k - 1 if k < 3 else -(-k // 2) for k in self.kernel_size)
    return self._apply(x, lambda x, w: stride2_conv_transpose(x, w, pad_lo))


def space_to_depth(x: jnp.ndarray, r: int = 2) -> jnp.ndarray:
  """(B, H, W, C) → (B, H/r, W/r, r·r·C), channels ordered (r, r, C); inverse of pixel_shuffle."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // r, r, w // r, r, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // r, w // r, r * r * c)


def stride2_conv(x: jnp.ndarray, kernel: jnp.ndarray, padding) -> jnp.ndarray:
  """A stride-2 convolution (kernel HWIO, explicit ((lo, hi), (lo, hi)) padding) computed as a
  stride-1 convolution of the space-to-depth input.

  Per axis, with xp the padded input and K = ⌈k/2⌉: y[i] = Σ_t xp[2i + t]·w[t]
  = Σ_{a<K} Σ_{p<2} X[i + a, p]·w[2a + p] with X[m, p] = xp[2m + p] (space-to-depth) and w
  zero past k. An odd `lo` becomes lo + 1 with a zero tap in front of w, so that all padding is
  whole coarse cells and goes into the stride-1 convolution's own padding: an explicit pad of
  the fine map before space-to-depth measured 2× slower in the gradient penalty's double
  backward. Only an odd-sized input is padded on the fine grid (by one row / column).
  """
  kh, kw, cin, cout = kernel.shape
  x_pads, conv_pads, kernel_pads, taps = [(0, 0)], [], [], []
  for size, k, (lo, hi) in zip(x.shape[1:3], (kh, kw), padding):
    n_out = (size + lo + hi - k) // 2 + 1
    front = lo % 2                      # zero taps in front of w
    k_eff = k + front
    t = -(-k_eff // 2)                  # taps on the coarse grid
    kernel_pads.append((front, 2 * t - k_eff))
    x_pads.append((0, size % 2))
    lo_c = (lo + front) // 2
    hi_c = n_out + t - 1 - lo_c - (size + size % 2) // 2
    conv_pads.append((lo_c, hi_c))
    taps.append(t)
  x_pads.append((0, 0))
  if any(p != (0, 0) for p in x_pads):
    x = jnp.pad(x, x_pads)
  w = jnp.pad(kernel, tuple(kernel_pads) + ((0, 0), (0, 0)))
  th, tw = taps
  w = w.reshape(th, 2, tw, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5).reshape(th, tw, 4 * cin, cout)
  xs = space_to_depth(x, 2)
  # A negative high padding (the last coarse cells are never read) is a crop.
  crop = tuple(slice(None, xs.shape[1 + i] + min(p[1], 0)) for i, p in enumerate(conv_pads))
  xs = xs[:, crop[0], crop[1]]
  conv_pads = [(lo, max(hi, 0)) for lo, hi in conv_pads]
  return jax.lax.conv_general_dilated(xs, w, (1, 1), conv_pads,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


class StridedConv(_Stride2Layer):
  """A stride-2 `nn.Conv` (same parameters, names and function), computed by `stride2_conv`.

  Why: on XLA:CPU a stride-2 convolution's input gradient is a convolution over a zero-dilated
  map and its second-order gradient (the gradient penalty's double backward) is slower still;
  as a stride-1 convolution of the space-to-depth input every pass stays on the fast path.
  One IGAN discriminator update (loss + gradient penalty) runs about 1.3× faster at 28×28 and
  1.4× at 96×96 (benchmarks/layer_speed.py; measurements in docs/speed.md), although the 2×2
  kernel over 4·Cin channels does more multiply-adds (zero taps) than the 3×3 one.
  `padding` is "SAME" (as nn.Conv's, from lax.padtype_to_pads) or explicit pairs.
  """
  padding: Any = "SAME"

  @nn.compact
  def __call__(self, x):
    padding = self.padding
    if isinstance(padding, str):
      padding = jax.lax.padtype_to_pads(x.shape[1:3], self.kernel_size, (2, 2), padding)
    return self._apply(x, lambda x, w: stride2_conv(x, w, padding))


class Dropout(nn.Module):
  """Inverted dropout, as `nn.Dropout` (keep with probability 1 − rate, scale kept units by
  1/(1 − rate)), with the mask drawn by XLA's RngBitGenerator (Threefry) from the module's
  "dropout" key.

  Why: `jax.random.bernoulli` computes Threefry in HLO; for the IGAN generator's 28×28×64 map
  at batch 64 (3.2 M units) this layer is about 4× faster than nn.Dropout on CPU
  (benchmarks/layer_speed.py), and the generator runs four times per paper iteration.
  Deterministic for a given key, backend and XLA version (so resume stays bit-exact); the
  stream is not JAX's threefry stream, so masks differ from nn.Dropout's for the same key.
  The keep test compares 32-bit words with ⌊(1 − rate)·2³²⌉, so the keep probability is exact
  to 2⁻³².
  """
  rate: float
  deterministic: bool = False

  @nn.compact
  def __call__(self, x):
    if self.deterministic or self.rate == 0.0:
      return x
    if self.rate >= 1.0:
      return jnp.zeros_like(x)
    key = self.make_rng("dropout")
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):  # a typed key; raw uint32[2] keys pass
      key = jax.random.key_data(key)
    key = key.reshape(-1).astype(jnp.uint32)
    state = jnp.concatenate([key[:2], jnp.zeros((2,), jnp.uint32)])  # (key, counter 0)
    _, bits = jax.lax.rng_bit_generator(state, x.shape, jnp.uint32,
                                        algorithm=jax.lax.RandomAlgorithm.RNG_THREE_FRY)
    keep_prob = 1.0 - self.rate
    threshold = jnp.uint32(min(round(keep_prob * 2.0 ** 32), 2 ** 32 - 1))
    return jnp.where(bits < threshold, x / jnp.asarray(keep_prob, x.dtype), jnp.zeros_like(x))


def make_norm(kind: str, train: bool, momentum: float, epsilon: float, dtype=jnp.float32,
              name: str | None = None) -> Callable:
  """Normalisation layer by name: batch (paper), layer (per-sample over H, W, C) or none."""
  if kind == "batch":
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon,
                        dtype=dtype, name=name)
  if kind == "layer":
    # GroupNorm with one group normalises each sample over (H, W, C): a per-sample LayerNorm that
    # keeps per-sample gradients independent, as the gradient penalty assumes (WGAN-GP §4).
    return nn.GroupNorm(num_groups=1, epsilon=epsilon, dtype=dtype, name=name)
  if kind == "none":
    return lambda x: x
  raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")


def icnr(r: int, base_init: Callable = nn.initializers.lecun_normal()) -> Callable:
  """ICNR initialiser for a convolution feeding `pixel_shuffle(·, r)` (Aitken et al. 2017,
  "Checkerboard artifact free sub-pixel convolution").

  Draws one kernel (kh, kw, Cin, C) with `base_init` and repeats it for the r² output phases, so
  that at initialisation the sub-pixel convolution equals a nearest-neighbour upsampling followed
  by a convolution: every r×r output cell starts flat, with no period-r pattern. Independent
  random weights per phase (the plain initialiser) start with one. Channels are ordered
  (r, r, C) as pixel_shuffle expects: channel p·C + c of phase p holds the base kernel's c.
  The base kernel has the same fan-in (kh·kw·Cin) as the full one, hence the same scale.
  """
  def init(key, shape, dtype=jnp.float32):
    *spatial_in, cout = shape
    if cout % (r * r):
      raise ValueError(f"icnr({r}): {cout} output channels are not a multiple of {r * r}")
    base = base_init(key, tuple(spatial_in) + (cout // (r * r),), dtype)
    return jnp.tile(base, (1,) * len(spatial_in) + (r * r,))
  return init


def bilinear_init(base_init: Callable = nn.initializers.lecun_normal()) -> Callable:
  """Initialiser for a 3×3 stride-2 transposed convolution kernel (HWIO): a 1×1 kernel drawn by
  `base_init` times the bilinear taps [½, 1, ½] on each axis, so the layer starts as bilinear
  ×2 upsampling followed by a 1×1 convolution (the bilinear initialisation of Long et al. 2015,
  "Fully convolutional networks", §3.3): no uneven overlap pattern at the start. Same fan-in
  scale as ICNR's base kernel."""
  def init(key, shape, dtype=jnp.float32):
    kh, kw, cin, cout = shape
    if (kh, kw) != (3, 3):
      raise ValueError(f"bilinear_init is for 3×3 kernels, got {kh}×{kw}")
    taps = jnp.asarray([0.5, 1.0, 0.5], dtype)
    base = base_init(key, (1, 1, cin, cout), dtype)
    return taps[:, None, None, None] * taps[None, :, None, None] * base
  return init


def leaky_relu(x):
  return nn.leaky_relu(x, LEAKY_SLOPE)
