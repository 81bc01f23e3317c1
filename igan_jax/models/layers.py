"""Building blocks shared by the generators and discriminators.

All modules are NHWC. `conv_norm_act` is the paper's "Conv + BN + LeakyReLU" unit (SPEC §1.1,
§1.3); `PatchUpsample` is a transposed convolution whose kernel equals its stride, written as one
matrix product (the 4→96 shortcut and 24→96 branch of IGAN, SPEC §1.1 R).
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
  (shared/bench/torch_ref/README.md measured the same trick).
  """
  features: int
  factor: int
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    b, h, w, _ = x.shape
    r = self.factor
    y = nn.Dense(r * r * self.features, use_bias=False, dtype=self.dtype, name="kernel")(x)
    y = y.reshape(b, h, w, r, r, self.features).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(b, h * r, w * r, self.features)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
    return y


class SubPixelConvTranspose(nn.Module):
  """3×3 transposed convolution with stride 2, computed as a 2×2 convolution + depth-to-space.

  Same function as PyTorch's `ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)`
  (the yardstick's layer; output = 2× input): per axis, with kernel taps w[0..2],
      y[2m] = x[m]·w[1],      y[2m + 1] = x[m]·w[2] + x[m + 1]·w[0]   (x[H] = 0).
  The parameter is the ordinary 3×3 kernel (HWIO); the four output phases are gathered from
  it into one (2, 2, Cin, 4·Cout) kernel. Why: XLA:CPU runs the transposed convolution as a
  convolution over a zero-dilated input, which measured several times slower (forward and
  backward) than this dense form; the result is the same (pinned by a test).
  """
  features: int
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    cin = x.shape[-1]
    w = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, cin, self.features))
    w = w.astype(self.dtype)
    zero = jnp.zeros_like(w[0, 0])
    # taps[a][t] = kernel index used by output phase a from input offset t (None: no tap).
    taps = ((1, None), (2, 0))

    def tap(a, b, t, u):
      i, j = taps[a][t], taps[b][u]
      return zero if i is None or j is None else w[i, j]

    # Kernel (t, u, Cin, (a, b, Cout)): phases ordered (a, b, C) as pixel_shuffle expects.
    k = jnp.stack([jnp.stack([jnp.concatenate([tap(a, b, t, u) for a in (0, 1) for b in (0, 1)],
                                              axis=-1) for u in (0, 1)]) for t in (0, 1)])
    y = jax.lax.conv_general_dilated(x.astype(self.dtype), k, (1, 1), ((0, 1), (0, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    y = pixel_shuffle(y, 2)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
    return y


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


def leaky_relu(x):
  return nn.leaky_relu(x, LEAKY_SLOPE)
