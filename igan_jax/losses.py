"""Adversarial losses, label targets, instance noise and the gradient penalty (docs/paper.md §2).

Pure functions of discriminator outputs (logits) or of a discriminator function; nothing here knows
about models, optimisers or state.

- Least squares with smoothed labels (docs/paper.md §2, R for the lost eq. 8, "the log was
  removed"):
    L_D = E[(D(x) − α)²] + E[(D(G(z)) − β)²],   L_G = E[(D(G(z)) − α)²]   (flipped labels, eq. 11)
- Binary cross-entropy with the same smoothed targets (the log kept):
    L_D = BCE(D(x), α) + BCE(D(G(z)), β),        L_G = BCE(D(G(z)), α)
- Wasserstein (for the WGAN-GP baseline): L_D = E[D(G(z))] − E[D(x)],  L_G = −E[D(G(z))]
- Gradient penalty (R for the lost eq. 12, Gulrajani et al. 2017 eq. 3):
    L_gp = λ · E[(‖∇_x̂ D(x̂)‖₂ − 1)²],   x̂ = ε·x_real + (1 − ε)·x_fake,  ε ~ U[0, 1] per sample.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

LOSSES = ("least_squares", "bce", "wasserstein")


def least_squares_d(real_logits, fake_logits, real_label=0.9, fake_label=0.1):
  return jnp.mean((real_logits - real_label) ** 2) + jnp.mean((fake_logits - fake_label) ** 2)


def least_squares_g(fake_logits, real_label=0.9):
  return jnp.mean((fake_logits - real_label) ** 2)


def bce_d(real_logits, fake_logits, real_label=0.9, fake_label=0.1):
  real = optax.sigmoid_binary_cross_entropy(real_logits, jnp.full_like(real_logits, real_label))
  fake = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.full_like(fake_logits, fake_label))
  return jnp.mean(real) + jnp.mean(fake)


def bce_g(fake_logits, real_label=0.9):
  return jnp.mean(
      optax.sigmoid_binary_cross_entropy(fake_logits, jnp.full_like(fake_logits, real_label)))


def wasserstein_d(real_logits, fake_logits, real_label=None, fake_label=None):
  del real_label, fake_label  # the critic has no targets
  return jnp.mean(fake_logits) - jnp.mean(real_logits)


def wasserstein_g(fake_logits, real_label=None):
  del real_label
  return -jnp.mean(fake_logits)


def get_losses(name: str) -> tuple[Callable, Callable]:
  """(d_loss(real_logits, fake_logits, real_label, fake_label), g_loss(fake_logits, real_label))."""
  table = {
      "least_squares": (least_squares_d, least_squares_g),
      "bce": (bce_d, bce_g),
      "wasserstein": (wasserstein_d, wasserstein_g),
  }
  if name not in table:
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
  return table[name]


def add_instance_noise(key, x, std):
  """Gaussian instance noise on a discriminator input (docs/paper.md §2). A Python std = 0
  returns x unchanged; std may also be a traced scalar (an annealed σ, `noise_scale`)."""
  if isinstance(std, (int, float)) and std == 0:
    return x
  return x + std * jax.random.normal(key, x.shape, x.dtype)


def noise_scale(step, anneal_steps: int):
  """The instance-noise multiplier at iteration `step`: max(0, 1 − step / anneal_steps), or 1
  when anneal_steps = 0 (constant noise). Annealed noise (Sønderby et al. 2017, "Amortised MAP
  inference for image super-resolution", §5) smooths the early game and vanishes later, so D
  ends up judging the images themselves; the paper states noise but not its schedule."""
  if anneal_steps <= 0:
    return 1.0
  # (anneal − step) / anneal rather than 1 − step / anneal: exactly 0 at step = anneal even
  # where XLA turns the division into a multiplication by the rounded reciprocal.
  return jnp.maximum(0.0, (anneal_steps - jnp.asarray(step, jnp.float32)) / anneal_steps)


def interpolate(key, real, fake):
  """x̂ = ε·real + (1 − ε)·fake with one ε ~ U[0, 1] per image.

  Images are the last three axes (H, W, C); any leading axes — (B,) or, for the class-stacked
  models, (N, B) — index samples.
  """
  eps = jax.random.uniform(key, real.shape[:-3] + (1, 1, 1), real.dtype)
  return eps * real + (1.0 - eps) * fake


def gradient_penalty(d_fn: Callable, x_hat, target_norm: float = 1.0):
  """E[(‖∇_x D(x)‖₂ − target)²] at x = x_hat, and the per-sample gradient norms.

  `d_fn` maps images (..., H, W, C) to per-sample logits (...,); norms are per image. The
  gradient of their sum gives each sample's input gradient when samples do not interact; with
  batch norm in train mode they do, and this is then the gradient of the batch's summed output,
  the same quantity `torch.autograd.grad` of the summed output gives. Differentiable again
  (`jax.grad` of it reaches the parameters). Unweighted: the caller multiplies by λ.
  """
  grads = jax.grad(lambda x: jnp.sum(d_fn(x)))(x_hat)
  norms = jnp.sqrt(jnp.sum(grads ** 2, axis=(-3, -2, -1)) + 1e-12)
  return jnp.mean((norms - target_norm) ** 2), norms
