"""Cost of N class discriminators: stacked parameters under one nn.vmap vs N separate ones.

    python benchmarks/igan_vn_cost.py --classes=10 --batch=64 --resolution=28

One forward + backward (gradient w.r.t. every parameter, train mode, batch-norm statistics
updated) of the IGAN_VN discriminators (docs/paper.md §1.2: one residual discriminator per class) on
images (N, B, res, res, C), four ways:
  stacked         igan_vn.StackedDiscriminator(stack="vmap"): one vmapped module, parameters
                  (N, …) — the default;
  stacked_unroll  the same module and variables with stack="unroll" (a fully unrolled nn.scan);
  loop_jit        N ResidualDiscriminators with their own parameter trees, a Python loop inside
                  ONE jit (one program, N copies of the network in it);
  separate        N calls of one jitted ResidualDiscriminator step, one per class (N dispatches).
With --part=g (or d,g) also the IGAN_VN generator's forward + backward (z (B, 100) → (N, B, …)),
stack="vmap" vs "unroll" (ways g_stacked, g_stacked_unroll).
Prints one JSON line per way: compile_s, step_ms (median of --repeats, each the mean of --iters
steps), ms_per_class, relative to the first way of its part, and the host (device, load average).
Never asserts on time; on a shared CPU, compare numbers from the same run only.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _host import device_name  # noqa: E402

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("classes", 10, "N, the number of class discriminators")
flags.DEFINE_integer("batch", 64, "images per class")
flags.DEFINE_integer("resolution", 28, "28 or 96")
flags.DEFINE_integer("channels", 1, "image channels")
flags.DEFINE_integer("iters", 3, "steps per timed repeat")
flags.DEFINE_integer("repeats", 5, "timed repeats; the median is reported")
flags.DEFINE_list("ways", ["stacked", "stacked_unroll", "loop_jit", "separate"],
                  "which discriminator ways to time")
flags.DEFINE_list("part", ["d"], "d (discriminators) and/or g (generator heads)")
flags.DEFINE_list("g_ways", ["g_stacked", "g_stacked_unroll"], "which generator ways to time")
flags.DEFINE_integer("g_channels", 64, "generator channels for --part=g")



def main(_):
  import jax
  import jax.numpy as jnp
  import numpy as np

  from igan_jax.compile_options import jit  # compiled as the library compiles
  from igan_jax.models import DEFAULT_WIDTHS, ResidualDiscriminator
  from igan_jax.models.igan_vn import IGANVNGenerator, StackedDiscriminator

  n, b, res, ch = FLAGS.classes, FLAGS.batch, FLAGS.resolution, FLAGS.channels
  widths = DEFAULT_WIDTHS[res]
  x = jax.random.normal(jax.random.PRNGKey(0), (n, b, res, res, ch))
  stacked_d = StackedDiscriminator(num_classes=n, widths=widths)
  single_d = ResidualDiscriminator(widths=widths)
  v = jit(stacked_d.init)(jax.random.PRNGKey(1), x)
  # The same numbers as N separate parameter trees (what N Python-level copies would hold).
  per_class = [jax.tree_util.tree_map(lambda a, k=k: a[k], {c: v[c]["discs"] for c in v})
               for k in range(n)]

  def loss_of(module):
    # Least squares against a fixed target, as the IGAN loss (docs/paper.md §2); the gradient flows
    # through batch norm's batch statistics exactly as in training.
    def loss(params, stats, x):
      logits, new = module.apply({"params": params, "batch_stats": stats}, x, train=True,
                                 mutable=["batch_stats"])
      # Per-class mean, summed over classes: each class's gradient is what it would be alone.
      return jnp.sum(jnp.mean((logits - 0.9) ** 2, axis=-1)), new["batch_stats"]
    return loss

  stacked_step = jit(jax.grad(loss_of(stacked_d), has_aux=True))
  unroll_step = jit(jax.grad(loss_of(stacked_d.clone(stack="unroll")), has_aux=True))
  single_step = jit(jax.grad(loss_of(single_d), has_aux=True))

  @jit
  def loop_step(trees, x):
    single_grad = jax.grad(loss_of(single_d), has_aux=True)
    return [single_grad(t["params"], t["batch_stats"], x[k]) for k, t in enumerate(trees)]

  ways = {
      "stacked": lambda: stacked_step(v["params"], v["batch_stats"], x),
      "stacked_unroll": lambda: unroll_step(v["params"], v["batch_stats"], x),
      "loop_jit": lambda: loop_step(per_class, x),
      "separate": lambda: [single_step(t["params"], t["batch_stats"], x[k])
                           for k, t in enumerate(per_class)],
  }
  host = dict(device=device_name(jax), loadavg_1m=os.getloadavg()[0], classes=n, batch=b,
              resolution=res)

  def time_ways(table, names, extra):
    first = None
    for name in names:
      fn = table[name]
      t0 = time.perf_counter()
      jax.block_until_ready(fn())  # compiles (separate: one program, reused N times)
      compile_s = time.perf_counter() - t0
      times = []
      for _ in range(FLAGS.repeats):
        t0 = time.perf_counter()
        for _ in range(FLAGS.iters):
          out = fn()
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t0) / FLAGS.iters)
      step_ms = 1e3 * statistics.median(times)
      first = first or step_ms
      print(json.dumps(dict(host, **extra, way=name, compile_s=round(compile_s, 2),
                            step_ms=round(step_ms, 2), ms_per_class=round(step_ms / n, 2),
                            min_ms=round(1e3 * min(times), 2),
                            relative_to_first=round(step_ms / first, 3))), flush=True)

  if "d" in FLAGS.part:
    time_ways(ways, FLAGS.ways, dict(part="d", widths=list(widths)))
  if "g" in FLAGS.part:
    z = jax.random.normal(jax.random.PRNGKey(2), (b, 100))
    g = IGANVNGenerator(num_classes=n, resolution=res, out_channels=ch, channels=FLAGS.g_channels)
    gv = jit(g.init)(jax.random.PRNGKey(3), z)

    def g_step_of(module):
      def loss(params, stats, z):
        images, new = module.apply({"params": params, "batch_stats": stats}, z, train=True,
                                   rngs={"dropout": jax.random.PRNGKey(4)},
                                   mutable=["batch_stats"])
        return jnp.mean(images ** 2), new["batch_stats"]
      return jit(jax.grad(loss, has_aux=True))
    g_vmap, g_unroll = g_step_of(g), g_step_of(g.clone(stack="unroll"))
    time_ways({"g_stacked": lambda: g_vmap(gv["params"], gv["batch_stats"], z),
               "g_stacked_unroll": lambda: g_unroll(gv["params"], gv["batch_stats"], z)},
              FLAGS.g_ways, dict(part="g", channels=FLAGS.g_channels))

  # The ways compute the same gradients (checked once, outside the timing).
  if "d" in FLAGS.part and {"stacked", "separate"} <= set(FLAGS.ways):
    g_stacked, _ = ways["stacked"]()
    g_sep = [g for g, _ in ways["separate"]()]
    err = max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(bb))))
              for k in range(n)
              for a, bb in zip(jax.tree_util.tree_leaves(g_stacked["discs"]),
                               jax.tree_util.tree_leaves(g_sep[k])))
    print(json.dumps(dict(check="stacked_vs_separate_grad_max_abs_diff", value=err)))


if __name__ == "__main__":
  app.run(main)
