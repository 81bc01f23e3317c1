"""Datasets for igan_jax: prepared once with TFDS, trained on as uint8 arrays.

Importing this package does not import TensorFlow (nor JAX: the on-device
sampler lives in `igan_jax.data.sampler`).
"""

from igan_jax.data.sources import (
    SUPPORTED,
    DatasetError,
    default_data_dir,
    load_images,
    prepare,
)

__all__ = ["DatasetError", "SUPPORTED", "default_data_dir", "load_images", "prepare"]
