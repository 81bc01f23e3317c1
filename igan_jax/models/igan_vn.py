"""IGAN_V2 / IGAN_VN: one generator for N classes, one discriminator per class (docs/paper.md
§1.2, paper §1.2 Fig. 5–7).

What the paper says (S), in its words: "extend the IGAN network: after every transposed
convolution add a convolution with the same channel count and stride 1 (more representational
power); after the 24×24×64 module attach as many branch networks as there are classes, and join
them with the branch module produced by the other module" (Fig. 5 for N = 2, Fig. 7 for N);
"IBlock = two up-convolution layers" (Fig. 6); "generating N classes uses N discriminators".
The figures are lost; the split below is our reading (R), chosen to follow those sentences:

    z ─ Dense → base² × C ─┬─ main path (IGAN's, deepened) ─────────────────┐
                           └─ shortcut (one transposed conv, deepened) ─────(+)── left ────┐
    z ─ Dense → branch² × C ══ trunk ends here: "the 24×24×64 module" ══╗                   │
                                                                       ╠═ head k (k < N):   │
                      IBlock_k: up-conv ×2 (each + stride-1 conv) ─────╝   (+) ← left ─────┘
                                                                            │
                                                              Conv 3×3 → BN → tanh → image_k

- Shared trunk (R): both dense stems (base 4×4 / branch 24×24 at 96; 7×7 / 14×14 at 28), the
  IGAN main path from the base map to res×res×C, and the one-step base → res shortcut; their sum
  `left` is "the branch module produced by the other (4×4) module", shared by every head
  (parameter names and shapes as in igan.py, so an IGAN trunk can be read into it).
- Deeper (S): after every transposed convolution, i.e. the main path's "ct" blocks, the shortcut
  (a transposed conv with kernel = stride, docs/paper.md §1.1) and the heads' up-convolutions, a
  3×3 stride-1 conv with the same channel count, followed like every conv by BN + LeakyReLU (S,
  docs/paper.md §1.1). The main path's PixelShuffle blocks are convolutions + depth-to-space,
  not transposed convolutions, and get none (R).
- Heads (R): one per class, starting right after the branch module (its Dense + BN + LeakyReLU
  output is shared). A head is an IBlock taking the branch map to res×res×C — it replaces IGAN's
  single 24→96 transposed conv, and "two up-convolution layers" are exactly the two ×2 steps
  24→48→96 — then the element-wise sum with `left` (IGAN's "addition", docs/paper.md §1.1),
  then Conv 3×3 → BN → tanh. At 28 the branch map (14) needs one ×2 step: the IBlock's second
  up-convolution has stride 1 (a stride-1 transposed 3×3 conv is a 3×3 conv) so a head has the
  same layer count at both resolutions (R).
- Dropout (R) as IGAN's: after the first two main-path blocks; none in the heads.

The N heads and the N discriminators are stacked parameters run by `nn.vmap` (docs/paper.md
§1.2 R, docs/design.md §3): one compiled program for N classes instead of N Python-level copies,
the saving the paper's own future work (§4 (3)) asks for. Each head and each discriminator has
its own batch norm statistics (`batch_stats` stacked on the same leading class axis as
`params`). On XLA:CPU the vmapped convolutions become grouped convolutions, and one training
step of the N = 10 discriminators ran ~13× slower than N plain copies (the weight gradient above
all), so the same stacked variables can also be evaluated by a fully unrolled `nn.scan`
(`stack`, STACK_IMPLS; benchmarks/igan_vn_cost.py has the numbers). The two initialise with
different random streams but, given the same variables, compute the same function.
IGAN_V2 is IGAN_VN with N = 2.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from igan_jax.models.discriminator import ResidualDiscriminator
from igan_jax.models.igan import (TOPOLOGY, conv_transpose_init, supported_resolutions,
                                  upsample_conv_init)
from igan_jax.models.layers import (Dropout, PatchUpsample, SubPixelConvTranspose, icnr,
                                   leaky_relu, pixel_shuffle)

# Strides of the IBlock's two up-convolutions per output resolution (R): branch side × their
# product = resolution (24·2·2 = 96, 14·2·1 = 28).
HEAD_UPS = {96: (2, 2), 28: (2, 1)}

# How the N stacked members are evaluated; both keep the same variables, every leaf with a
# leading class axis of size N, so checkpoints move freely between them.
#   "vmap":   nn.vmap: one batched copy of the network in the program; compile time independent
#             of N. JAX turns a convolution with a batched kernel AND batched input into one
#             grouped convolution (feature_group_count = N; its weight gradient a batch-grouped
#             one), which XLA:CPU runs slowly: forward + backward of the N = 10, B = 64, 28×28
#             discriminators about 13× slower than unrolled, the generator's heads ~20×
#             (benchmarks/igan_vn_cost.py; docs/speed.md).
#   "unroll": nn.scan fully unrolled: N plain copies of the network in ONE program, each reading
#             its slice of the stacked parameters; fast on XLA:CPU, compile time grows with N.
#             (A rolled scan, a while loop, measured slower still on XLA:CPU.)
#   "auto":   "unroll" on CPU, "vmap" elsewhere (docs/design.md §1.2: choose per backend by
#             measurement; not yet measured on a GPU).
STACK_IMPLS = ("vmap", "unroll", "auto")

# The stacked (class) axis: leading in every stacked parameter, batch statistic and output.
_STACK = dict(variable_axes={"params": 0, "batch_stats": 0},
              split_rngs={"params": True, "dropout": True})


def resolve_stack(impl: str) -> str:
  if impl not in STACK_IMPLS:
    raise ValueError(f"unknown class-stack evaluation {impl!r}; choose one of {STACK_IMPLS}")
  if impl == "auto":
    return "unroll" if jax.default_backend() == "cpu" else "vmap"
  return impl


def apply_stacked(member: nn.Module, n: int, impl: str, train: bool, args, in_axes):
  """Runs `member(*args, train)` for N stacked copies of its variables; outputs stacked on axis 0.

  in_axes: per argument, 0 (the class axis: member k sees args[i][k]) or None (shared by all).
  """
  impl = resolve_stack(impl)
  if impl == "vmap":
    lifted = nn.vmap(lambda mdl, *a: mdl(*a, train), in_axes=tuple(in_axes), out_axes=0,
                     axis_size=n, **_STACK)
    return lifted(member, *args)
  scan_axes = tuple(nn.broadcast if a is None else a for a in in_axes)
  lifted = nn.scan(lambda mdl, carry, *a: (carry, mdl(*a, train)), in_axes=scan_axes,
                   out_axes=0, length=n, unroll=n, **_STACK)
  return lifted(member, None, *args)[1]


class _Layers(nn.Module):
  """Shared helpers: BN + LeakyReLU after every conv (S, docs/paper.md §1.1), and the stride-1
  deepening conv."""
  channels: int = 64
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32
  upsample_init: str = "default"  # igan.UPSAMPLE_INITS
  output_norm: bool = True        # batch norm between the output conv and tanh

  def _bn_act(self, x, train, name):
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                     epsilon=self.bn_epsilon, dtype=self.dtype, name=name)(x)
    return leaky_relu(x)

  def _refine(self, x, train, name):
    """The IGAN_VN deepening: a 3×3 stride-1 conv, same channel count, + BN + LeakyReLU."""
    x = nn.Conv(self.channels, (3, 3), dtype=self.dtype, name=name)(x)
    return self._bn_act(x, train, f"{name}_bn")


class IGANVNTrunk(_Layers):
  """z (B, z_dim) → (branch map (B, br, br, C), left (B, res, res, C)): the shared part."""
  resolution: int = 96
  dropout_rate: float = 0.2
  dropout_blocks: int = 2

  @nn.compact
  def __call__(self, z, train: bool = False):
    if self.resolution not in TOPOLOGY:
      raise ValueError(f"IGAN_VN supports resolutions {supported_resolutions()}, "
                       f"got {self.resolution}")
    topo, c, res = TOPOLOGY[self.resolution], self.channels, self.resolution
    base, branch = topo["base"], topo["branch"]
    b = z.shape[0]
    z = z.astype(self.dtype)

    a = nn.Dense(base * base * c, dtype=self.dtype, name="fc_base")(z).reshape(b, base, base, c)
    a = self._bn_act(a, train, "bn_base")
    s = nn.Dense(branch * branch * c, dtype=self.dtype, name="fc_branch")(z)
    s = self._bn_act(s.reshape(b, branch, branch, c), train, "bn_branch")

    h = a
    for i, (kind, r) in enumerate(topo["ups"]):
      if kind == "ps":
        h = nn.Conv(c * r * r, (3, 3), dtype=self.dtype, name=f"up{i}_conv",
                    **upsample_conv_init(self.upsample_init, r))(h)
        h = pixel_shuffle(h, r)
        h = self._bn_act(h, train, f"up{i}_bn")
      else:
        assert r == 2, "the main path's transposed convolutions have stride 2"
        h = SubPixelConvTranspose(c, dtype=self.dtype, name=f"up{i}_convT",
                                  **conv_transpose_init(self.upsample_init))(h)
        h = self._bn_act(h, train, f"up{i}_bn")
        h = self._refine(h, train, f"up{i}_refine")
      if i < self.dropout_blocks:
        h = Dropout(self.dropout_rate, deterministic=not train)(h)

    short = PatchUpsample(c, res // base, dtype=self.dtype, name="shortcut",
                          **upsample_conv_init(self.upsample_init, res // base))(a)
    short = self._bn_act(short, train, "shortcut_bn")
    short = self._refine(short, train, "shortcut_refine")
    return s, h + short


class IGANVNHead(_Layers):
  """One class's head: (branch map, left) → image (B, res, res, out_channels) in [−1, 1]."""
  resolution: int = 96
  out_channels: int = 3

  @nn.compact
  def __call__(self, s, left, train: bool = False):
    h = s
    for j, r in enumerate(HEAD_UPS[self.resolution]):  # the IBlock: two up-convolutions
      if r == 2:
        h = SubPixelConvTranspose(self.channels, dtype=self.dtype, name=f"iblock{j}_convT",
                                  **conv_transpose_init(self.upsample_init))(h)
      else:
        h = nn.Conv(self.channels, (3, 3), dtype=self.dtype, name=f"iblock{j}_convT")(h)
      h = self._bn_act(h, train, f"iblock{j}_bn")
      h = self._refine(h, train, f"iblock{j}_refine")
    h = h + left  # joined with the 4×4 module's branch: element-wise (docs/paper.md §1.1)
    h = nn.Conv(self.out_channels, (3, 3), dtype=self.dtype, name="out_conv")(h)
    if self.output_norm:  # the paper's "Conv + BN + tanh"; DCGAN §3 leaves this layer bare
      h = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                       epsilon=self.bn_epsilon, dtype=self.dtype, name="out_bn")(h)
    return jnp.tanh(h).astype(jnp.float32)


class IGANVNGenerator(nn.Module):
  """z (B, z_dim) → images (N, B, res, res, out_channels) in [−1, 1]: one image per class per z.

  Parameters: {"trunk": …, "heads": … (each leaf with a leading axis of size N)}; the heads
  share the trunk's two maps and are evaluated as `stack` says (STACK_IMPLS).
  """
  num_classes: int = 10
  resolution: int = 96
  out_channels: int = 3
  channels: int = 64
  dropout_rate: float = 0.2
  dropout_blocks: int = 2
  upsample_init: str = "default"
  output_norm: bool = True
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32
  stack: str = "vmap"

  def setup(self):
    if self.resolution not in HEAD_UPS:
      raise ValueError(f"IGAN_VN supports resolutions {supported_resolutions()}, "
                       f"got {self.resolution}")
    if self.num_classes < 1:
      raise ValueError(f"num_classes must be ≥ 1, got {self.num_classes}")
    kw = dict(resolution=self.resolution, channels=self.channels, bn_momentum=self.bn_momentum,
              bn_epsilon=self.bn_epsilon, dtype=self.dtype, upsample_init=self.upsample_init)
    head_kw = dict(kw, output_norm=self.output_norm)
    self.trunk = IGANVNTrunk(dropout_rate=self.dropout_rate, dropout_blocks=self.dropout_blocks,
                             **kw)
    # One member module; apply_stacked gives it N stacked copies of its variables.
    self.heads = IGANVNHead(out_channels=self.out_channels, **head_kw)

  def __call__(self, z, train: bool = False):
    s, left = self.trunk(z, train)
    return apply_stacked(self.heads, self.num_classes, self.stack, train, (s, left),
                         in_axes=(None, None))


class StackedDiscriminator(nn.Module):
  """images (N, B, H, W, C) → logits (N, B): N residual discriminators (discriminator.py), one
  per class (S: "N classes, N discriminators"), as stacked parameters evaluated in one program
  (`nn.vmap` by default; `stack` picks another evaluation of the same variables, STACK_IMPLS).

  Discriminator k sees only x[k]; its batch norm statistics are computed over x[k]'s batch and
  kept per class. Parameters: {"discs": … (each leaf with a leading axis of size N)}.
  """
  num_classes: int = 10
  widths: Sequence[int] = (32, 64, 128, 256)
  norm: str = "batch"
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: Any = jnp.float32
  stack: str = "vmap"
  input_norm: bool = True

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.ndim != 5 or x.shape[0] != self.num_classes:
      raise ValueError(f"StackedDiscriminator takes (N={self.num_classes}, B, H, W, C) images, "
                       f"got shape {x.shape}")
    member = ResidualDiscriminator(widths=tuple(self.widths), norm=self.norm,
                                   bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                                   dtype=self.dtype, input_norm=self.input_norm, name="discs")
    return apply_stacked(member, self.num_classes, self.stack, train, (x,), in_axes=(0,))
