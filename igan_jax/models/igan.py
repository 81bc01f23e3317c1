"""The IGAN generator (paper Fig. 3): two dense stems from z and three paths to the image.

    z ─ Dense → base×base×C ──┬─ main path (PixelShuffle / ConvTranspose, 3×3) → res×res×C ─┐
                              └─ shortcut: one transposed conv, kernel = stride = res/base ──(+)─┐
    z ─ Dense → branch×branch×C ─ one transposed conv, kernel = stride = res/branch ──────────(+)─
                                                                          Conv 3×3 → BN → tanh

Stated by the paper (S): the two dense layers (4·4·64 and 24·24·64 at 96×96), the one-step 4→96
shortcut and the 24→96 branch, element-wise sums, PixelShuffle and transposed convolutions, BN +
LeakyReLU after every conv, dropout in some layers, final conv + BN + tanh.
Reconstructed (R): main-path schedule 4→12→24→48→96 = PixelShuffle×3, ConvT×2,
PixelShuffle×2, ConvT×2; the 28×28 variant 7→14→28 = PixelShuffle×2, ConvT×2 with 7×7 and
14×14 stems (kernels 4 and 2); dropout 0.2 after the first two main-path blocks; the dense stems
get BN + LeakyReLU like every conv. The same reconstruction as the PyTorch reference
implementation used for speed comparisons, so they are like for like.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from igan_jax.models.layers import (Dropout, PatchUpsample, ResizeConv, SubPixelConvTranspose,
                                   bilinear_init, icnr, leaky_relu, pixel_shuffle)

# Per output resolution: stem sizes and the main path as (kind, factor) blocks.
# "ps" = 3×3 conv to C·r² channels then PixelShuffle(r); "ct" = 3×3 transposed conv, stride r
# (PyTorch padding 1, output_padding 1, as the yardstick).
TOPOLOGY = {
    96: dict(base=4, branch=24, ups=(("ps", 3), ("ct", 2), ("ps", 2), ("ct", 2))),
    28: dict(base=7, branch=14, ups=(("ps", 2), ("ct", 2))),
}


# How the up-sampling layers are initialised. "default": flax's lecun_normal everywhere, so each
# output phase of an up-sampler starts with its own random weights: a period-r pattern from the
# first step (11–16 % of the initial output power at period 2 or 4 at 28×28). "icnr": every
# up-sampler starts as a plain up-sampling followed by a convolution — the PixelShuffle convs and
# the kernel = stride transposed convs with one kernel repeated for every phase (layers.icnr),
# the 3×3 stride-2 transposed convs bilinear (layers.bilinear_init).
UPSAMPLE_INITS = ("default", "icnr")
# How the one-step shortcut (base → res) and the branch (branch → res) reach full resolution.
# "patch": a transposed convolution with kernel = stride (R, docs/paper.md §1.1): every output
#   phase of an r×r patch has its own weights, so the generator can paint a period-r texture
#   (4 and 2 at 28×28) that the sum carries straight to the image; with one D update per G update
#   it does (docs/ablation.md).
# "resize": bilinear up-sampling by r, then a 3×3 convolution: the same weights at every output
#   position, so no phase-dependent pattern can come from these two paths.
#   Measured at 3,000 iterations (docs/ablation.md §6.3): classifier FID 135 against 158 at equal
#   iterations, Inception FID level, 24 % more time per iteration on 2 CPU cores and no better
#   at equal wall-clock, so "patch" stays the default.
SKIP_UPSAMPLES = ("patch", "resize")
# How the main path's up-sampling blocks (TOPOLOGY "ups") reach the next resolution.
# "subpixel": as TOPOLOGY says, the paper's PixelShuffle and 3×3 stride-2 transposed
#   convolutions (S, docs/paper.md §1.1): both compute each output phase with its own weights.
# "resize": every block a bilinear up-sampling by r then a 3×3 convolution to C channels (the
#   same weights at every output position, like "resize" above); with skip_upsample="resize"
#   no layer of the generator can paint a phase-dependent (period 2 or 4) texture. A deviation
#   from the paper. Measured with both at 3,000 iterations (docs/ablation.md §6.4): the
#   crosshatch goes and Inception FID falls from 94 to 81 (DCGAN's level), classifier FID level,
#   37 % more time per iteration on 2 CPU cores; not yet the default.
MAIN_UPSAMPLES = ("subpixel", "resize")


def _check_init(kind):
  if kind not in UPSAMPLE_INITS:
    raise ValueError(f"unknown upsample_init {kind!r}; choose one of {UPSAMPLE_INITS}")


def upsample_conv_init(kind: str, r: int) -> dict:
  """Keyword arguments for a conv feeding pixel_shuffle(·, r), or for a PatchUpsample of factor
  r (the same (r, r, C) channel order), per UPSAMPLE_INITS."""
  _check_init(kind)
  return {} if kind == "default" else dict(kernel_init=icnr(r))


def conv_transpose_init(kind: str) -> dict:
  """Keyword arguments for a SubPixelConvTranspose (3×3, stride 2), per UPSAMPLE_INITS."""
  _check_init(kind)
  return {} if kind == "default" else dict(kernel_init=bilinear_init())


def supported_resolutions() -> tuple[int, ...]:
  return tuple(sorted(TOPOLOGY))


class IGANGenerator(nn.Module):
  """z (B, z_dim) → images (B, res, res, out_channels) in [−1, 1]."""
  resolution: int = 96
  out_channels: int = 3
  channels: int = 64
  dropout_rate: float = 0.2
  dropout_blocks: int = 2          # dropout after the first this many main-path blocks
  upsample_init: str = "default"   # UPSAMPLE_INITS
  output_norm: bool = True         # batch norm between the output conv and tanh
  skip_upsample: str = "patch"     # SKIP_UPSAMPLES
  main_upsample: str = "subpixel"  # MAIN_UPSAMPLES
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32

  def _bn_act(self, x, train, name):
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                     epsilon=self.bn_epsilon, dtype=self.dtype, name=name)(x)
    return leaky_relu(x)

  def _skip_up(self, x, r, name):
    """x (B, h, w, C) → (B, r·h, r·w, C) by the shortcut / branch up-sampler (SKIP_UPSAMPLES)."""
    if self.skip_upsample == "patch":
      return PatchUpsample(self.channels, r, dtype=self.dtype, name=name,
                           **upsample_conv_init(self.upsample_init, r))(x)
    if self.skip_upsample != "resize":
      raise ValueError(f"unknown skip_upsample {self.skip_upsample!r}; choose one of "
                       f"{SKIP_UPSAMPLES}")
    return ResizeConv(self.channels, r, dtype=self.dtype, name=name)(x)

  @nn.compact
  def __call__(self, z, train: bool = False):
    if self.resolution not in TOPOLOGY:
      raise ValueError(
          f"IGAN supports resolutions {supported_resolutions()}, got {self.resolution}")
    topo, c, res = TOPOLOGY[self.resolution], self.channels, self.resolution
    base, branch = topo["base"], topo["branch"]
    b = z.shape[0]
    z = z.astype(self.dtype)

    # Two "over-complete" stems from the same z (the paper's generator).
    a = nn.Dense(base * base * c, dtype=self.dtype, name="fc_base")(z).reshape(b, base, base, c)
    a = self._bn_act(a, train, "bn_base")
    s = nn.Dense(branch * branch * c, dtype=self.dtype, name="fc_branch")(z)
    s = self._bn_act(s.reshape(b, branch, branch, c), train, "bn_branch")

    # Main path: base → res in several up-sampling blocks.
    if self.main_upsample not in MAIN_UPSAMPLES:
      raise ValueError(f"unknown main_upsample {self.main_upsample!r}; choose one of "
                       f"{MAIN_UPSAMPLES}")
    h = a
    for i, (kind, r) in enumerate(topo["ups"]):
      if self.main_upsample == "resize":
        h = ResizeConv(c, r, dtype=self.dtype, name=f"up{i}_resize")(h)
      elif kind == "ps":
        h = nn.Conv(c * r * r, (3, 3), dtype=self.dtype, name=f"up{i}_conv",
                    **upsample_conv_init(self.upsample_init, r))(h)
        h = pixel_shuffle(h, r)
      else:
        assert r == 2, "the main path's transposed convolutions have stride 2"
        h = SubPixelConvTranspose(c, dtype=self.dtype, name=f"up{i}_convT",
                                  **conv_transpose_init(self.upsample_init))(h)
      h = self._bn_act(h, train, f"up{i}_bn")
      if i < self.dropout_blocks:
        h = Dropout(self.dropout_rate, deterministic=not train)(h)

    # One-step shortcut base → res, and the branch → res path (kernel = stride).
    short = self._bn_act(self._skip_up(a, res // base, "shortcut"), train, "shortcut_bn")
    right = self._bn_act(self._skip_up(s, res // branch, "branch"), train, "branch_bn")

    h = h + short + right  # "added": element-wise, the channel count stays C (paper)
    h = nn.Conv(self.out_channels, (3, 3), dtype=self.dtype, name="out_conv")(h)
    if self.output_norm:  # the paper's "Conv + BN + tanh"; DCGAN §3 leaves this layer bare
      h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                       epsilon=self.bn_epsilon, dtype=self.dtype, name="out_bn")(h)
    return jnp.tanh(h).astype(jnp.float32)
