"""The residual discriminator (docs/paper.md §1.3, paper Fig. 8–9).

Stated: a residual classifier simpler than the generator; conv block = Conv + BN + LeakyReLU;
residual blocks of such; strided convolutions instead of pooling.
Reconstructed (R): per stage one stride-2 3×3 conv block then one residual block
x + f(f(x)); widths 32-64-128-256 at 96×96 (96→48→24→12→6) and 64-128 at 28×28 (28→14→7);
a final dense layer to one logit. Norm = "batch" (paper) | "layer" | "none": batch norm couples
the samples of a batch, which the gradient penalty assumes they are not (Gulrajani et al. 2017
§4), so the other two are offered.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from igan_jax.models.layers import StridedConv, leaky_relu, make_norm

DEFAULT_WIDTHS = {96: (32, 64, 128, 256), 28: (64, 128)}


class ConvBlock(nn.Module):
  features: int
  stride: int = 1
  norm: str = "batch"
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32
  space_to_depth: bool = True  # a stride-2 conv as layers.StridedConv (same function, faster)

  @nn.compact
  def __call__(self, x, train: bool):
    # A conv followed by a normaliser needs no bias: the norm's shift replaces it.
    use_bias = self.norm == "none"
    if self.stride == 2 and self.space_to_depth:  # nn.Conv's parameters and name (Conv_0)
      x = StridedConv(self.features, (3, 3), padding="SAME", use_bias=use_bias, dtype=self.dtype,
                      name="Conv_0")(x)
    else:
      x = nn.Conv(self.features, (3, 3), strides=(self.stride, self.stride), padding="SAME",
                  use_bias=use_bias, dtype=self.dtype)(x)
    x = make_norm(self.norm, train, self.bn_momentum, self.bn_epsilon, self.dtype)(x)
    return leaky_relu(x)


class ResidualBlock(nn.Module):
  features: int
  norm: str = "batch"
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    kw = dict(norm=self.norm, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
              dtype=self.dtype)
    h = ConvBlock(self.features, **kw)(x, train)
    h = ConvBlock(self.features, **kw)(h, train)
    return x + h


class ResidualDiscriminator(nn.Module):
  """images (B, H, W, C) → logits (B,).

  input_norm: whether the first (input) conv block is normalised like every other (True, the
  paper's "Conv + BN + LeakyReLU" read literally) or has a bias and no normaliser (False, as
  DCGAN §3: "not applying batchnorm to ... the discriminator input layer"). A stride-2 conv maps
  a period-2 pattern and a brightness offset shared by a batch to a per-channel constant, which
  batch norm over that batch subtracts: with input_norm, D cannot see them.

  space_to_depth: the stride-2 convolutions as layers.StridedConv (default; the same function
  and parameters as nn.Conv, faster in the gradient penalty's double backward on XLA:CPU,
  benchmarks/layer_speed.py) or as nn.Conv (False)."""
  widths: Sequence[int] = (32, 64, 128, 256)
  norm: str = "batch"
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32
  space_to_depth: bool = True
  input_norm: bool = True

  @nn.compact
  def __call__(self, x, train: bool = False):
    kw = dict(norm=self.norm, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
              dtype=self.dtype)
    h = x.astype(self.dtype)
    for i, w in enumerate(self.widths):
      down_kw = dict(kw, norm="none") if i == 0 and not self.input_norm else kw
      h = ConvBlock(w, stride=2, space_to_depth=self.space_to_depth, name=f"down{i}",
                    **down_kw)(h, train)
      h = ResidualBlock(w, name=f"res{i}", **kw)(h, train)
    h = h.reshape(h.shape[0], -1)
    return nn.Dense(1, dtype=self.dtype, name="logit")(h)[:, 0].astype(jnp.float32)
