"""The layer rewrites in igan_jax/models/layers.py against the plain Flax layers they replace.

    python benchmarks/layer_speed.py --resolution=28,96 --batch=64

Prints one JSON line per case (median seconds of a jitted call after compiling):
- "d_update": one IGAN discriminator update as train.py runs it — least-squares loss on a real
  and a fake batch plus the gradient penalty (whose double backward reaches the parameters),
  value_and_grad — for models.ResidualDiscriminator (docs/paper.md §1.3 R) with its stride-2
  convolutions as `nn.Conv(strides=2)` ("lax", space_to_depth=False) or as
  `layers.StridedConv` ("space_to_depth", the default); also the
  difference of the two losses and the largest relative difference of their gradients (the
  same function: float32 rounding, which this randomly initialised, batch-normalised double
  backward amplifies to ~1e-2 at 96×96 (~1e-6 at 28); in float64 the two agree to ~3e-14);
- "dropout": the dropout mask of the IGAN generator's largest dropout map (res×res×64 at 28,
  (res/4)²×64 at 96) by `nn.Dropout` (JAX's threefry) or `layers.Dropout` (XLA's generator).
Never asserts on time.
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _host import device_name  # noqa: E402

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("resolution", ["28"], "resolutions, e.g. 28,96")
flags.DEFINE_integer("batch", 64, "batch size")
flags.DEFINE_integer("repeats", 5, "timed calls; the median is reported")


def median_seconds(jax, fn, *args):
  import numpy as np
  jax.block_until_ready(fn(*args))  # compile
  times = []
  for _ in range(FLAGS.repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def d_update_case(res: int):
  import jax
  import jax.numpy as jnp
  import numpy as np

  from igan_jax.compile_options import jit  # compiled as the library compiles
  from igan_jax.losses import gradient_penalty, least_squares_d
  from igan_jax.models.discriminator import DEFAULT_WIDTHS, ResidualDiscriminator

  ch = 1 if res == 28 else 3
  rng = np.random.default_rng(0)
  real, fake = (jnp.asarray(rng.uniform(-1, 1, (FLAGS.batch, res, res, ch)), jnp.float32)
                for _ in range(2))
  eps = jnp.asarray(rng.uniform(0, 1, (FLAGS.batch, 1, 1, 1)), jnp.float32)
  results = {}
  for impl in ("lax", "space_to_depth"):
    d = ResidualDiscriminator(DEFAULT_WIDTHS[res], space_to_depth=impl == "space_to_depth")
    variables = d.init(jax.random.PRNGKey(0), real)  # same parameter tree for both impls

    def apply(params, stats, x, d=d):
      out, mutated = d.apply({"params": params, "batch_stats": stats}, x, train=True,
                             mutable=["batch_stats"])
      return out, mutated["batch_stats"]

    def loss(params, stats, apply=apply):
      r, stats = apply(params, stats, real)
      f, stats = apply(params, stats, fake)
      gp, _ = gradient_penalty(lambda x: apply(params, stats, x)[0],
                               eps * real + (1 - eps) * fake)
      return least_squares_d(r, f) + 5.0 * gp

    fn = jit(jax.value_and_grad(loss))
    seconds = median_seconds(jax, fn, variables["params"], variables["batch_stats"])
    results[impl] = (seconds, fn(variables["params"], variables["batch_stats"]))
  (l0, g0), (l1, g1) = results["lax"][1], results["space_to_depth"][1]
  # Relative to each gradient leaf's largest entry: float32 rounding of a different summation.
  max_diff = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                 for a, b in zip(jax.tree_util.tree_leaves(g0), jax.tree_util.tree_leaves(g1)))
  for impl, (seconds, _) in results.items():
    print(json.dumps(dict(case="d_update", impl=impl, resolution=res, batch=FLAGS.batch,
                          device=device_name(jax), seconds=round(seconds, 4),
                          loss_diff=float(abs(l0 - l1)), max_rel_grad_diff=max_diff)), flush=True)


def dropout_case(res: int):
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  from igan_jax.compile_options import jit  # compiled as the library compiles
  from igan_jax.models.layers import Dropout

  side = res if res == 28 else res // 4  # the last dropout block: 28×28 at 28, 24×24 at 96
  x = jnp.ones((FLAGS.batch, side, side, 64), jnp.float32)
  for impl, layer in (("nn.Dropout", nn.Dropout(0.2, deterministic=False)),
                      ("layers.Dropout", Dropout(0.2))):
    fn = jit(lambda x, key, layer=layer: layer.apply({}, x, rngs={"dropout": key}))
    seconds = median_seconds(jax, fn, x, jax.random.PRNGKey(0))
    print(json.dumps(dict(case="dropout", impl=impl, shape=list(x.shape),
                          device=device_name(jax), seconds=round(seconds, 5))), flush=True)


def main(argv):
  del argv
  for r in FLAGS.resolution:
    d_update_case(int(r))
    dropout_case(int(r))


if __name__ == "__main__":
  app.run(main)
