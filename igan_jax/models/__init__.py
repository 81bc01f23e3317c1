"""Generators and discriminators, built from a config; parameter counts.

Models know nothing of training or datasets (DESIGN §2): they map z to images and images to logits.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from igan_jax.models.discriminator import DEFAULT_WIDTHS, ResidualDiscriminator
from igan_jax.models.igan import TOPOLOGY, IGANGenerator, supported_resolutions
from igan_jax.models.layers import PatchUpsample, pixel_shuffle

MODELS = ("igan",)


def _dtype(name: str):
  return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def build_generator(model_cfg, resolution: int, out_channels: int):
  if model_cfg.name == "igan":
    return IGANGenerator(resolution=resolution, out_channels=out_channels,
                         channels=model_cfg.channels, dropout_rate=model_cfg.dropout,
                         bn_momentum=model_cfg.bn_momentum, bn_epsilon=model_cfg.bn_epsilon,
                         dtype=_dtype(model_cfg.dtype))
  raise ValueError(f"unknown model {model_cfg.name!r}; choose one of {MODELS}")


def build_discriminator(model_cfg, resolution: int):
  widths = tuple(model_cfg.d_widths) or DEFAULT_WIDTHS[resolution]
  return ResidualDiscriminator(widths=widths, norm=model_cfg.d_norm,
                               bn_momentum=model_cfg.bn_momentum, bn_epsilon=model_cfg.bn_epsilon,
                               dtype=_dtype(model_cfg.dtype))


def param_count(params) -> int:
  """Number of scalars in a parameter pytree."""
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))
