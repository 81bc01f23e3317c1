"""The paper's decaying learning rate and the two Adam optimisers (docs/paper.md §2).

The paper's eq. 6 was lost in extraction; it is "a variant of: the learning rate decreases with
the iteration count", with parameters end_lr, init_set and gamma, and simple datasets going from
0.002 to 0.0002. Reconstruction (R, docs/paper.md §2):

    lr(t) = end_lr + (init_lr − end_lr) · gamma^(t / decay_steps)

so lr(0) = init_lr, lr is monotone, and lr → end_lr. The generator uses 1.5 × the
discriminator's rate at every iteration (docs/paper.md §2). `t` is the paper iteration (one
generator update); the discriminator's Adam counts n_critic updates per iteration, so its
schedule is fed count // n_critic.
"""
from __future__ import annotations

import jax.numpy as jnp
import optax


def igan_decay(init_lr: float, end_lr: float, gamma: float, decay_steps: float) -> optax.Schedule:
  """lr(t) = end_lr + (init_lr − end_lr) · gamma^(t / decay_steps).   (docs/paper.md §2, R)

  Computed in float32, gamma included: for a gamma near 1 that float32 cannot hold exactly its
  rounding shifts gamma^t by up to ~t·2⁻²⁴ relative (the default gamma, 0.5, is exact)."""
  if decay_steps <= 0:
    raise ValueError(f"decay_steps must be > 0, got {decay_steps}")
  if not 0 < gamma <= 1:
    raise ValueError(f"gamma must be in (0, 1], got {gamma}")

  def schedule(count):
    t = jnp.asarray(count, jnp.float32)
    return end_lr + (init_lr - end_lr) * jnp.power(gamma, t / decay_steps)

  return schedule


def scaled(schedule: optax.Schedule, factor: float) -> optax.Schedule:
  """factor × schedule (the generator's 1.5 × the discriminator's rate)."""
  return lambda count: factor * schedule(count)


def per_iteration(schedule: optax.Schedule, updates_per_iteration: int) -> optax.Schedule:
  """Feed `schedule` the iteration index when the optimiser steps several times an iteration."""
  return lambda count: schedule(count // updates_per_iteration)


def schedules(optim_cfg) -> tuple[optax.Schedule, optax.Schedule]:
  """(discriminator lr(t), generator lr(t)) as functions of the paper iteration t."""
  if optim_cfg.schedule == "constant":
    d = optax.constant_schedule(optim_cfg.d_init_lr)
  else:
    d = igan_decay(optim_cfg.d_init_lr, optim_cfg.d_end_lr, optim_cfg.gamma,
                   optim_cfg.decay_steps)
  return d, scaled(d, optim_cfg.g_lr_ratio)


def make_optimizers(optim_cfg, n_critic: int):
  """The two Adam chains: (discriminator tx, generator tx)."""
  d_lr, g_lr = schedules(optim_cfg)
  betas = dict(b1=optim_cfg.b1, b2=optim_cfg.b2, eps=optim_cfg.eps)
  d_tx = optax.chain(optax.scale_by_adam(**betas),
                     optax.scale_by_learning_rate(per_iteration(d_lr, n_critic)))
  g_tx = optax.chain(optax.scale_by_adam(**betas), optax.scale_by_learning_rate(g_lr))
  return d_tx, g_tx
