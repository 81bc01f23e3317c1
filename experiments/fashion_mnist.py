"""IGAN on Fashion-MNIST at 28×28 with the paper's recipe (SPEC §2–3).

Command (prepares TFDS `fashion_mnist` offline from Debian's package on first use):

    python -m igan_jax.main --config=experiments/fashion_mnist.py --workdir=runs/fashion_mnist

Measured time per 1,000 iterations: see README.md "Speed" (2-core CPU: ~30 min at 28×28).
Resize to 96×96 instead: --config.data.resolution=96.
"""
from igan_jax.config import base_config


def get_config(arg: str | None = None):
  config = base_config()
  config.data.name = "fashion_mnist"
  config.data.resolution = 28
  if arg not in (None, "", "igan"):
    raise ValueError(f"unknown variant {arg!r} for fashion_mnist; available: igan")
  return config
