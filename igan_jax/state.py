"""The whole training run as one pytree (docs/design.md §1, §3).

`GANState` holds everything a training step needs: the iteration counter, the run's base key,
both networks (params, batch-norm statistics, optimiser state) and, optionally, an EMA of the
generator's parameters. Module `apply` functions, optimisers and the step's hyper-parameters are
static fields: they are rebuilt from the config, never saved. A checkpoint is therefore just the
state's arrays (`to_checkpoint`), and resume is bit-exact.

`create_train_state(config)` builds a fresh state from a validated config: what training starts
from, and the target that a checkpoint is restored into (training's resume, `--mode=evaluate`).
It lives here, not in train.py, so that evaluation can build and restore a state without
importing training (docs/design.md §2).
"""
from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
from flax import struct
from flax.training import train_state

from igan_jax import models, optim
from igan_jax.compile_options import jit
from igan_jax.data import image_shape as dataset_image_shape


class ModelState(train_state.TrainState):
  """A flax TrainState (params, opt_state, step; static apply_fn and tx) plus batch statistics."""
  batch_stats: Any = None

  def variables(self, params=None):
    v = {"params": self.params if params is None else params}
    if self.batch_stats is not None:
      v["batch_stats"] = self.batch_stats
    return v


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static hyper-parameters of one training iteration (hashable: part of the jit cache key)."""
  batch_size: int
  n_critic: int
  z_dim: int
  loss: str
  real_label: float
  fake_label: float
  gp_weight: float
  noise_std: float
  ema_decay: float = 0.0
  num_classes: int = 1     # N > 1: class-stacked models (igan_v2/vn, docs/paper.md §1.2)
  # Recipe choices the paper leaves open (config.loss; defaults = the first reconstruction):
  gp_center: float = 1.0   # the penalty's target norm: E[(‖∇D(x̂)‖ − gp_center)²]
  gp_bn: str = "batch"     # D's batch norm in the penalty's pass: "batch" | "running"
  d_bn_batch: str = "separate"  # D's batch norm over "separate" real / fake batches or "joint"
  noise_anneal: int = 0    # iterations over which the instance noise falls linearly to 0


class GANState(struct.PyTreeNode):
  step: jax.Array          # paper iterations done (int32 scalar)
  rng: jax.Array           # the run's base key; step t uses fold_in(rng, t)
  g: ModelState
  d: ModelState
  hp: StepConfig = struct.field(pytree_node=False)
  g_ema: Any = None        # EMA of g.params when hp.ema_decay > 0 (ours, not in the paper)


def to_checkpoint(state: GANState) -> dict:
  """The saved form: a nested dict of arrays (static fields dropped)."""
  return flax.serialization.to_state_dict(state)


def from_checkpoint(target: GANState, restored: dict) -> GANState:
  """Puts restored arrays into `target`'s structure (static fields come from the config)."""
  return flax.serialization.from_state_dict(target, restored)


def image_shape(config) -> tuple[int, int, int]:
  """(H, W, C) of the run's images: the dataset's channels at config.data.resolution."""
  return tuple(dataset_image_shape(config.data.name, config.data.resolution))


def step_config(config) -> StepConfig:
  """The static hyper-parameters of one iteration, from a validated config."""
  return StepConfig(batch_size=config.batch_size, n_critic=config.n_critic,
                    z_dim=config.model.z_dim, loss=config.loss.name,
                    real_label=config.loss.real_label, fake_label=config.loss.fake_label,
                    gp_weight=config.loss.gp_weight, noise_std=config.loss.noise_std,
                    ema_decay=config.get("ema_decay", 0.0),
                    num_classes=config.num_classes,
                    gp_center=config.loss.get("gp_center", 1.0),
                    gp_bn=config.loss.get("gp_bn", "batch"),
                    d_bn_batch=config.loss.get("d_bn_batch", "separate"),
                    noise_anneal=config.loss.get("noise_anneal", 0))


@functools.lru_cache(maxsize=16)
def _static_parts(config_json: str):
  """(generator, discriminator, d_tx, g_tx, jitted inits) for one config, built once.

  Module apply functions and optimisers are static fields of the state, hence part of every jit
  cache key: building them once per config lets states made by separate create_train_state
  calls (a resume, an evaluation, a test) share compiled steps instead of recompiling.
  """
  config = ml_collections.ConfigDict(json.loads(config_json))
  res, _, ch = image_shape(config)
  g_model = models.build_generator(config.model, res, ch)
  d_model = models.build_discriminator(config.model, res)
  d_tx, g_tx = optim.make_optimizers(config.optim, config.n_critic)
  g_init = jit(functools.partial(g_model.init, train=False))
  d_init = jit(functools.partial(d_model.init, train=False))
  return g_model, d_model, d_tx, g_tx, g_init, d_init


def create_train_state(config, rng: jax.Array | None = None) -> GANState:
  """A fresh GANState for a validated `config`; `rng` defaults to PRNGKey(config.seed).

  What training starts from, and the target a checkpoint is restored into (checkpoint.py)."""
  rng = jax.random.PRNGKey(config.seed) if rng is None else rng
  res, _, ch = image_shape(config)
  key = json.dumps({k: config.to_dict()[k] for k in ("model", "optim", "n_critic", "data")},
                   sort_keys=True)
  g_model, d_model, d_tx, g_tx, g_init, d_init = _static_parts(key)
  k_g, k_d = jax.random.split(jax.random.fold_in(rng, 0x1A17))
  g_vars = g_init(k_g, jnp.zeros((2, config.model.z_dim), jnp.float32))
  n = config.num_classes
  d_vars = d_init(k_d, jnp.zeros(((n,) if n > 1 else ()) + (2, res, res, ch), jnp.float32))

  def model_state(model, variables, tx):
    ms = ModelState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                           batch_stats=variables.get("batch_stats"))
    # An int32 array, not flax's Python 0: a weakly typed step would make the first step, every
    # later step and a restored state three different jit signatures (three compilations).
    return ms.replace(step=jnp.zeros((), jnp.int32))

  hp = step_config(config)
  g = model_state(g_model, g_vars, g_tx)
  state = GANState(step=jnp.zeros((), jnp.int32), rng=rng, g=g,
                   d=model_state(d_model, d_vars, d_tx), hp=hp,
                   g_ema=g.params if hp.ema_decay > 0 else None)
  # Committed to the device like a restored state's arrays: jit keys on that too, so a fresh
  # and a restored state (a resume, a rollback) share one compiled step.
  return jax.device_put(state, jax.local_devices()[0])
