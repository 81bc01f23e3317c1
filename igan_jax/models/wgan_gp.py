"""The WGAN-GP baseline (docs/paper.md §1.4; Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville 2017,
"Improved training of Wasserstein GANs").

- S (their §4, "No critic batch normalization"): the penalty is on each input's own gradient
  norm; batch norm makes every output depend on the whole batch, which invalidates it. They
  use no normaliser in the critic, or layer normalisation as a drop-in. Here: "none" by default,
  "layer" as the option (per-sample over H, W, C: layers.make_norm). "batch" is refused.
- S (their Appendix / experiments): the networks are DCGAN-like convolutional nets or ResNets.
  R: we take the DCGAN-like pair, i.e. dcgan.py's networks at the same resolutions (28 and 96):
  the generator is the DCGAN generator unchanged (BN + ReLU, tanh output; the penalty concerns
  only the critic, so the generator may keep its batch norm), the critic is the DCGAN
  discriminator (5×5 stride-2 convs, LeakyReLU 0.2, one output) without batch norm. Its output
  is an unbounded critic value, used with losses.wasserstein_d/g.
The training recipe of that paper (λ = 10, 5 critic steps, Adam lr 1e-4, β = (0, 0.9)) is config,
not architecture; see the experiment configs.
"""
from __future__ import annotations

from igan_jax.models.dcgan import DCGAN_D_WIDTHS, DCGANDiscriminator, DCGANGenerator

CRITIC_NORMS = ("none", "layer")

# The generator is DCGAN's (see the module docstring).
WGANGPGenerator = DCGANGenerator


class WGANGPCritic(DCGANDiscriminator):
  """images (B, H, W, C) → critic values (B,); no batch norm, hence no batch_stats."""
  widths: tuple = DCGAN_D_WIDTHS[28]
  norm: str = "none"
  space_to_depth: bool = True  # its penalty's double backward: 2.6× faster on XLA:CPU (dcgan.py)

  def __post_init__(self):
    if self.norm not in CRITIC_NORMS:
      raise ValueError(f"the WGAN-GP critic takes norm in {CRITIC_NORMS} (no batch norm: "
                       f"Gulrajani et al. 2017 §4), got {self.norm!r}")
    super().__post_init__()
