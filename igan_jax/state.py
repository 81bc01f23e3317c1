"""The whole training run as one pytree (docs/design.md §1, §3).

`GANState` holds everything a training step needs: the iteration counter, the run's base key,
both networks (params, batch-norm statistics, optimiser state) and, optionally, an EMA of the
generator's parameters. Module `apply` functions, optimisers and the step's hyper-parameters are
static fields: they are rebuilt from the config, never saved. A checkpoint is therefore just the
state's arrays (`to_checkpoint`), and resume is bit-exact.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
from flax import struct
from flax.training import train_state


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
