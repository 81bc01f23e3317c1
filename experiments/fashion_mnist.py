"""IGAN on Fashion-MNIST at 28×28 with the paper's recipe (SPEC §2–3).

Command (prepares TFDS `fashion_mnist` offline from Debian's package on first use):

    python -m igan_jax.main --config=experiments/fashion_mnist.py --workdir=runs/fashion_mnist

Variants: `--config=experiments/fashion_mnist.py:dcgan` or `:wgan_gp` (the baselines with their own
recipes, igan_jax/config.py apply_variant).

Measured time per 1,000 iterations: ~75 min on a 2-core CPU at 28×28 (0.22 it/s, README
"Speed").
Resize to 96×96 instead: --config.data.resolution=96.
"""
from igan_jax.config import apply_variant, base_config


def get_config(arg: str | None = None):
  config = base_config()
  config.data.name = "fashion_mnist"
  config.data.resolution = 28
  return apply_variant(config, arg)
