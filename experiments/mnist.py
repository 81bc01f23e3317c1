"""IGAN on MNIST at 28×28 with the paper's recipe (SPEC §2–3).

Command (TFDS `mnist`: downloads when online; offline, put the four original files in the TFDS
manual dir — the error message names them and the path):

    python -m igan_jax.main --config=experiments/mnist.py --workdir=runs/mnist

Variants: `--config=experiments/mnist.py:dcgan` or `:wgan_gp` (the baselines with their own
recipes, igan_jax/config.py apply_variant).

Measured time per 1,000 iterations: as fashion_mnist.py (same shapes).
"""
from igan_jax.config import apply_variant, base_config


def get_config(arg: str | None = None):
  config = base_config()
  config.data.name = "mnist"
  config.data.resolution = 28
  return apply_variant(config, arg)
