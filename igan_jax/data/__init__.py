"""Datasets for igan_jax: prepared once (TFDS, LSUN archives, folders), trained on as uint8.

Importing this package does not import TensorFlow nor TFDS (nor JAX: the on-device
sampler lives in `igan_jax.data.sampler`).  Names: mnist, fashion_mnist,
celeb_a, lsun/<category>, folder:/abs/path, and A+B combinations (classes
0, 1, ...); see `igan_jax.data.core`.  The functions are those of the dispatcher,
`igan_jax.data.datasets`, and of `igan_jax.data.stream`.
"""

from igan_jax.data.core import (
    CELEBA_ATTRIBUTES,
    DEFAULT_RESOLUTION,
    SUPPORTED,
    TWO_CLASS_LSUN,
    DatasetError,
    default_data_dir,
    is_supported,
)
from igan_jax.data.datasets import (
    dataset_bytes,
    dataset_size,
    fits_in_memory,
    image_shape,
    load_attributes,
    load_images,
    num_classes,
    prepare,
    prepare_images,
)
from igan_jax.data.stream import BatchStream, sample_images, stream_batches

__all__ = [
    "BatchStream", "CELEBA_ATTRIBUTES", "DEFAULT_RESOLUTION", "DatasetError", "SUPPORTED",
    "TWO_CLASS_LSUN", "dataset_bytes", "dataset_size", "default_data_dir", "fits_in_memory",
    "image_shape", "is_supported", "load_attributes", "load_images", "num_classes", "prepare",
    "prepare_images", "sample_images", "stream_batches",
]
