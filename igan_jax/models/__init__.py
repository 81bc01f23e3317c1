"""Generators and discriminators, built from a config; parameter counts.

Models know nothing of training or datasets (docs/design.md §2): they map z to images and images
to logits.

    name       generator                             discriminator
    igan       IGANGenerator      z → (B, H, W, C)   ResidualDiscriminator  (B, H, W, C) → (B,)
    igan_v2    IGANVNGenerator, N = 2                StackedDiscriminator, N = 2
    igan_vn    IGANVNGenerator    z → (N, B, H, W, C) StackedDiscriminator (N, B, H, W, C) → (N, B)
    dcgan      DCGANGenerator     z → (B, H, W, C)   DCGANDiscriminator     (B, H, W, C) → (B,)
    wgan_gp    WGANGPGenerator    z → (B, H, W, C)   WGANGPCritic           (B, H, W, C) → (B,)

Config keys read here beyond the IGAN ones (with defaults, so older configs still build):
model.num_classes (0 = the model's default: 2 for igan_v2, 10 for igan_vn),
model.class_stack (how igan_v2/vn evaluate their N stacked heads and discriminators: "vmap"
(default) | "unroll" | "auto", igan_vn.STACK_IMPLS) and
model.critic_norm (WGAN-GP critic: "none" (default) | "layer"),
model.dropout_blocks (IGAN main-path blocks followed by dropout, default 2) and
model.upsample_init (IGAN up-samplers: "default" | "icnr"), model.g_output_norm (batch norm
before the IGAN generators' tanh, default True) and model.d_input_norm (whether the
residual discriminator's input block is normalised, default True).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from igan_jax.models.dcgan import DCGAN_D_WIDTHS, DCGANDiscriminator, DCGANGenerator
from igan_jax.models.discriminator import DEFAULT_WIDTHS, ResidualDiscriminator
from igan_jax.models.igan import TOPOLOGY, IGANGenerator, supported_resolutions
from igan_jax.models.igan_vn import (STACK_IMPLS, IGANVNGenerator, StackedDiscriminator,
                                    resolve_stack)
from igan_jax.models.layers import PatchUpsample, pixel_shuffle
from igan_jax.models.wgan_gp import WGANGPCritic, WGANGPGenerator

MODELS = ("igan", "igan_v2", "igan_vn", "dcgan", "wgan_gp")
# Models whose generator makes one image per class, (N, B, H, W, C), judged by N discriminators.
CLASS_STACKED = ("igan_v2", "igan_vn")
DEFAULT_NUM_CLASSES = {"igan_v2": 2, "igan_vn": 10}


def _dtype(name: str):
  return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def _get(model_cfg, key, default):
  """A config value that older configs may lack (ConfigDict raises AttributeError for those)."""
  return getattr(model_cfg, key, default)


def num_classes(model_cfg) -> int:
  """N for the class-stacked models (0 or absent = the model's default), 1 for the others."""
  name = model_cfg.name
  if name not in CLASS_STACKED:
    return 1
  n = _get(model_cfg, "num_classes", 0) or DEFAULT_NUM_CLASSES[name]
  if name == "igan_v2" and n != 2:
    raise ValueError(f"igan_v2 is the two-class model; got model.num_classes={n} "
                     "(use igan_vn for other N)")
  if n < 1:
    raise ValueError(f"model.num_classes must be ≥ 1, got {n}")
  return n


def class_stack(model_cfg) -> str:
  """How igan_v2/vn evaluate their stacked members: "vmap" | "unroll" | "auto" (checked here)."""
  stack = _get(model_cfg, "class_stack", "vmap")
  resolve_stack(stack)  # raises ValueError naming the choices
  return stack


def _check_name(name):
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose one of {MODELS}")


def build_generator(model_cfg, resolution: int, out_channels: int):
  name = model_cfg.name
  _check_name(name)
  common = dict(resolution=resolution, out_channels=out_channels, channels=model_cfg.channels,
                bn_momentum=model_cfg.bn_momentum, bn_epsilon=model_cfg.bn_epsilon,
                dtype=_dtype(model_cfg.dtype))
  igan_kw = dict(dropout_rate=model_cfg.dropout,
                 dropout_blocks=_get(model_cfg, "dropout_blocks", 2),
                 upsample_init=_get(model_cfg, "upsample_init", "default"),
                 output_norm=_get(model_cfg, "g_output_norm", True))
  if name == "igan":
    return IGANGenerator(skip_upsample=_get(model_cfg, "skip_upsample", "patch"),
                         main_upsample=_get(model_cfg, "main_upsample", "subpixel"), **igan_kw,
                         **common)
  if name in CLASS_STACKED:
    return IGANVNGenerator(num_classes=num_classes(model_cfg), stack=class_stack(model_cfg),
                           **igan_kw, **common)
  if name == "dcgan":
    return DCGANGenerator(**common)
  return WGANGPGenerator(**common)


def build_discriminator(model_cfg, resolution: int):
  name = model_cfg.name
  _check_name(name)
  widths = tuple(model_cfg.d_widths)
  common = dict(bn_momentum=model_cfg.bn_momentum, bn_epsilon=model_cfg.bn_epsilon,
                dtype=_dtype(model_cfg.dtype))
  if name == "dcgan":
    return DCGANDiscriminator(widths=widths or DCGAN_D_WIDTHS[resolution], norm="batch", **common)
  if name == "wgan_gp":
    return WGANGPCritic(widths=widths or DCGAN_D_WIDTHS[resolution],
                        norm=_get(model_cfg, "critic_norm", "none"), **common)
  common.update(widths=widths or DEFAULT_WIDTHS[resolution], norm=model_cfg.d_norm,
                input_norm=_get(model_cfg, "d_input_norm", True))
  if name in CLASS_STACKED:
    return StackedDiscriminator(num_classes=num_classes(model_cfg),
                                stack=class_stack(model_cfg), **common)
  return ResidualDiscriminator(**common)


def param_count(params) -> int:
  """Number of scalars in a parameter pytree."""
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))
