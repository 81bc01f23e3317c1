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

The state is replicated over the run's `data` mesh (igan_jax/parallel.py; config.num_devices),
never pinned to one device, and carries that mesh as a static field: the jitted step reads it
there to split each batch over the devices, and a checkpoint is restored into the shardings of
whatever mesh the restoring run has (any device count).
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
import numpy as np
from flax import struct
from flax.training import train_state
from jax.sharding import Mesh

from igan_jax import models, optim, parallel
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
  # The `data` mesh the state is replicated over and the step splits its batches over
  # (parallel.py); static: part of the jit cache key, never saved.
  mesh: Mesh | None = struct.field(pytree_node=False, default=None)


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
def _static_parts(config_json: str, shape: tuple[int, int, int], mesh: Mesh):
  """(generator, discriminator, jitted inits, jitted assembly of a state) for one model, optimiser
  and n_critic (config_json), image shape and mesh, built once.

  Module apply functions and optimisers are static fields of the state, hence part of every jit
  cache key: building them once per config lets states made by separate create_train_state
  calls (a resume, an evaluation, a test) share compiled steps instead of recompiling. The key
  holds only what the models and optimisers depend on, so two datasets of one image shape
  (MNIST and Fashion-MNIST, CelebA and LSUN at 96×96) share them too. The inits return their
  variables replicated over the mesh (jit out_shardings): each device computes the same
  initialisation, so any device count starts from the same numbers.
  """
  config = ml_collections.ConfigDict(json.loads(config_json))
  res, _, ch = shape
  g_model = models.build_generator(config.model, res, ch)
  d_model = models.build_discriminator(config.model, res)
  d_tx, g_tx = optim.make_optimizers(config.optim, config.n_critic)
  everywhere = parallel.replicated(mesh)
  g_init = jit(functools.partial(g_model.init, train=False), out_shardings=everywhere)
  d_init = jit(functools.partial(d_model.init, train=False), out_shardings=everywhere)

  def assemble(g_vars, d_vars, rng, hp):
    # The optimiser states (zeros and counts) made where the parameters are: replicated.
    def model_state(model, variables, tx):
      ms = ModelState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                             batch_stats=variables.get("batch_stats"))
      # An int32 array, not flax's Python 0: a weakly typed step would make the first step,
      # every later step and a restored state three different jit signatures.
      return ms.replace(step=jnp.zeros((), jnp.int32))

    g = model_state(g_model, g_vars, g_tx)
    return GANState(step=jnp.zeros((), jnp.int32), rng=rng, g=g,
                    d=model_state(d_model, d_vars, d_tx), hp=hp,
                    g_ema=g.params if hp.ema_decay > 0 else None, mesh=mesh)

  assemble = jit(assemble, out_shardings=everywhere, static_argnames="hp")
  return g_model, d_model, g_init, d_init, assemble


def _host_key(key: jax.Array):
  """A raw uint32 key as numpy: a jit over several processes' devices takes host values (each
  process passes the same), not one process's device array. Typed keys pass unchanged."""
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key
  return np.asarray(key)


def create_train_state(config, rng: jax.Array | None = None, mesh: Mesh | None = None
                       ) -> GANState:
  """A fresh GANState for a validated `config`; `rng` defaults to PRNGKey(config.seed).

  Replicated over `mesh` (default: parallel.mesh_for(config), the first config.num_devices
  devices, 0 = all). What training starts from, and the target a checkpoint is restored into
  (checkpoint.py), whose shardings the restored arrays take."""
  rng = jax.random.PRNGKey(config.seed) if rng is None else rng
  mesh = parallel.mesh_for(config) if mesh is None else mesh
  shape = image_shape(config)
  res, _, ch = shape
  key = json.dumps({k: config.to_dict()[k] for k in ("model", "optim", "n_critic")},
                   sort_keys=True)
  _, _, g_init, d_init, assemble = _static_parts(key, shape, mesh)
  k_g, k_d = jax.random.split(jax.random.fold_in(rng, 0x1A17))
  g_vars = g_init(_host_key(k_g), np.zeros((2, config.model.z_dim), np.float32))
  n = config.num_classes
  d_vars = d_init(_host_key(k_d),
                  np.zeros(((n,) if n > 1 else ()) + (2, res, res, ch), np.float32))
  # Replicated like a restored state's arrays (checkpoint.py restores into these shardings):
  # jit keys on that too, so a fresh and a restored state (a resume, a rollback) share one
  # compiled step.
  return assemble(g_vars, d_vars, _host_key(rng), hp=step_config(config))
