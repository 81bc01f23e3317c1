"""The DCGAN baseline (docs/paper.md §1.4; Radford, Metz & Chintala 2015, "Unsupervised
representation learning with deep convolutional GANs", §3 "Approach and model architecture",
Fig. 1).

The paper's architecture guidelines (§3), all followed here (S = stated by DCGAN):
- S: no pooling; strided convolutions in the discriminator, fractionally-strided (transposed)
  convolutions in the generator.
- S: batch norm in both networks, except at the generator's output layer and the
  discriminator's input layer.
- S: no fully connected hidden layers: the generator's first layer is a matrix multiply (the
  "projection") reshaped into a small convolutional map; the discriminator's last conv map is
  flattened into a single output.
- S: ReLU in the generator, tanh at its output; LeakyReLU (slope 0.2, §4) in the discriminator.

Reconstructed (R) for the resolutions this project needs (DCGAN itself was drawn at 64×64):
- generator 28×28: z → 7×7×2C → 14×14×C → 28×28×out; 96×96: z → 6×6×8C → 12×12×4C → 24×24×2C
  → 48×48×C → 96×96×out, C = model.channels (64 by default; DCGAN's Fig. 1 ends at 128 at
  64×64, i.e. width halves at every doubling of resolution as here);
- transposed convolutions 5×5, stride 2, "SAME" (the kernel size drawn in DCGAN's Fig. 1),
  computed as sub-pixel convolutions (layers.Stride2ConvTranspose: nn.ConvTranspose's
  parameters and function, faster on XLA:CPU);
- discriminator: 5×5 stride-2 convolutions, widths (64, 128) at 28 (28→14→7) and
  (64, 128, 256, 512) at 96 (96→48→24→12→6), flattened into one logit (no sigmoid: the loss
  takes logits).
The discriminator's normaliser is a field so that the WGAN-GP critic (wgan_gp.py) is this same
network with no batch norm.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from igan_jax.models.layers import (Stride2ConvTranspose, StridedConv, leaky_relu,
                                   make_norm)

# Per output resolution: the projected map's side and how many stride-2 doublings follow.
DCGAN_TOPOLOGY = {28: dict(base=7, ups=2), 96: dict(base=6, ups=4)}
DCGAN_D_WIDTHS = {28: (64, 128), 96: (64, 128, 256, 512)}
KERNEL = (5, 5)


def generator_widths(resolution: int, channels: int) -> tuple[int, ...]:
  """Channels of the maps before each transposed conv, coarse to fine: C·2^(k−1), …, 2C, C."""
  ups = DCGAN_TOPOLOGY[resolution]["ups"]
  return tuple(channels * 2 ** (ups - 1 - i) for i in range(ups))


class DCGANGenerator(nn.Module):
  """z (B, z_dim) → images (B, res, res, out_channels) in [−1, 1]. No dropout."""
  resolution: int = 96
  out_channels: int = 3
  channels: int = 64
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32

  def _bn_relu(self, x, train, name):
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                     epsilon=self.bn_epsilon, dtype=self.dtype, name=name)(x)
    return nn.relu(x)

  @nn.compact
  def __call__(self, z, train: bool = False):
    if self.resolution not in DCGAN_TOPOLOGY:
      raise ValueError(f"DCGAN supports resolutions {tuple(sorted(DCGAN_TOPOLOGY))}, "
                       f"got {self.resolution}")
    base = DCGAN_TOPOLOGY[self.resolution]["base"]
    widths = generator_widths(self.resolution, self.channels)
    b = z.shape[0]
    # The projection: one matrix multiply reshaped to a conv map (DCGAN §3), then BN + ReLU.
    # Layers followed by BN carry no bias: BN's shift replaces it.
    h = nn.Dense(base * base * widths[0], use_bias=False, dtype=self.dtype,
                 name="project")(z.astype(self.dtype))
    h = self._bn_relu(h.reshape(b, base, base, widths[0]), train, "project_bn")
    for i, w in enumerate(widths[1:]):
      h = Stride2ConvTranspose(w, KERNEL, use_bias=False, dtype=self.dtype, name=f"up{i}")(h)
      h = self._bn_relu(h, train, f"up{i}_bn")
    # Output layer: no batch norm (DCGAN §3), tanh.
    h = Stride2ConvTranspose(self.out_channels, KERNEL, dtype=self.dtype, name="out")(h)
    return jnp.tanh(h).astype(jnp.float32)


class DCGANDiscriminator(nn.Module):
  """images (B, H, W, C) → logits (B,).

  norm = "batch" (DCGAN) | "layer" | "none" (the WGAN-GP critic); never on the input layer.
  space_to_depth: compute the stride-2 convolutions as layers.StridedConv (same function and
  parameters). It pays where a gradient penalty differentiates them twice — the WGAN-GP critic
  runs about 2.5× faster at 28×28 — and not in DCGAN's plain step (slower), so DCGAN keeps
  nn.Conv (XLA:CPU; measurements in docs/speed.md).
  """
  widths: Sequence[int] = (64, 128)
  norm: str = "batch"
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32
  space_to_depth: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = x.astype(self.dtype)
    for i, w in enumerate(self.widths):
      normed = i > 0 and self.norm != "none"  # no normaliser on the input layer (DCGAN §3)
      if self.space_to_depth:  # the same function and parameters as the nn.Conv below
        h = StridedConv(w, KERNEL, padding="SAME", use_bias=not normed, dtype=self.dtype,
                        name=f"down{i}")(h)
      else:
        h = nn.Conv(w, KERNEL, strides=(2, 2), padding="SAME", use_bias=not normed,
                    dtype=self.dtype, name=f"down{i}")(h)
      if normed:
        h = make_norm(self.norm, train, self.bn_momentum, self.bn_epsilon, self.dtype,
                      name=f"down{i}_norm")(h)
      h = leaky_relu(h)
    # No hidden fully connected layer: the last conv map, flattened, feeds one output.
    h = h.reshape(h.shape[0], -1)
    return nn.Dense(1, dtype=self.dtype, name="logit")(h)[:, 0].astype(jnp.float32)
