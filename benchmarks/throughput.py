"""Training throughput: paper iterations per second (n_critic D updates + 1 G update).

    python benchmarks/throughput.py --model=igan --resolution=28 --batch=64
    python benchmarks/throughput.py --devices=4 --batch=256   # data parallel, global batch

On CPU, N devices for --devices: XLA_FLAGS=--xla_force_host_platform_device_count=N (they share
the host's cores, so this checks the program, not a speed-up).

Prints one JSON line per case: model, resolution, batch, device, loop, it_per_s, img_per_s,
compile_s, peak_mem_mb, devices, per_device_batch (img_per_s counts generated images:
n_critic + 1 batches an iteration, × N classes for igan_v2/igan_vn; --batch is the global batch,
split over --devices). Each model runs with its own recipe
(`config.apply_variant`: DCGAN n_critic 1 without penalty, WGAN-GP n_critic 5). The images are
random uint8 arrays resident on the device (the step's speed does not depend on their content);
batches are sampled on the device as in training.
Never asserts on time. Compare only numbers measured on one machine in one session: on a busy
2-core host the same code varied by ±10 % within an hour, and by more from one session to another.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _host import device_name  # noqa: E402

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("model", ["igan"], "variants (config.apply_variant), e.g. "
                  "igan,igan_paper,dcgan,wgan_gp")
flags.DEFINE_list("resolution", ["28"], "resolutions, e.g. 28,96")
flags.DEFINE_integer("batch", 64, "global batch size (split over --devices)")
flags.DEFINE_integer("devices", 1, "devices of the data mesh (config.num_devices; 0 = all)",
                     lower_bound=0)
flags.DEFINE_integer("iters", 5, "timed iterations per repeat")
flags.DEFINE_integer("repeats", 3, "timed repeats; the median is reported")
flags.DEFINE_integer("warmup", 1, "untimed iterations after compiling")
flags.DEFINE_string("loop", "auto", "auto | python | scan")
flags.DEFINE_string("dtype", "float32", "float32 | bfloat16 compute")
flags.DEFINE_string("class_stack", "auto", "igan_v2 / igan_vn: auto | vmap | unroll "
                    "(config.model.class_stack)")



def peak_mem_mb(jax) -> float:
  d = jax.devices()[0]
  stats = d.memory_stats() if hasattr(d, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # host RSS (Linux: KiB)


def bench(model: str, resolution: int):
  import jax
  import numpy as np

  from igan_jax import config as config_lib, input_pipeline, models, parallel, train

  # Each model with its own recipe (n_critic, penalty), as `--config=...:<model>` trains it.
  config = config_lib.apply_variant(config_lib.base_config(), model)
  config.data.name = "fashion_mnist" if resolution == 28 else "celeb_a"
  config.data.resolution = resolution
  config.model.dtype = FLAGS.dtype
  config.model.class_stack = FLAGS.class_stack
  config.batch_size = FLAGS.batch
  config.num_devices = FLAGS.devices
  config_lib.validate(config)
  loop = train.resolve_loop(FLAGS.loop)
  state = train.create_train_state(config)
  parallel.check_batch(config.batch_size, state.mesh)
  shape = (1024,) + train.image_shape(config)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, shape, dtype=np.uint8)
  classes = input_pipeline.model_classes(config)
  if classes is None:
    images = input_pipeline.ResidentData(images=parallel.put_replicated(images, state.mesh))
  else:  # random labels: the step's cost does not depend on them
    labels = np.arange(shape[0]) % len(classes)
    order, starts, counts = input_pipeline.class_index(labels, range(len(classes)))
    images = input_pipeline.ResidentData(
        *parallel.put_replicated((images, order, starts, counts), state.mesh))

  t = time.perf_counter()
  state, m = train.train_steps(state, images, FLAGS.iters if loop == "scan" else 1, loop)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t
  if FLAGS.warmup:
    state, m = train.train_steps(state, images, FLAGS.warmup if loop != "scan" else FLAGS.iters,
                                 loop)
    jax.block_until_ready(m)
  times = []
  for _ in range(FLAGS.repeats):
    t = time.perf_counter()
    state, m = train.train_steps(state, images, FLAGS.iters, loop)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  it_per_s = FLAGS.iters / float(np.median(times))
  print(json.dumps(dict(model=model, resolution=resolution, batch=FLAGS.batch,
                        device=device_name(jax), backend=jax.default_backend(), loop=loop,
                        dtype=FLAGS.dtype, it_per_s=round(it_per_s, 4),
                        **({"class_stack": models.resolve_stack(FLAGS.class_stack)}
                           if state.hp.num_classes > 1 else {}),
                        img_per_s=round(it_per_s * FLAGS.batch * (config.n_critic + 1)
                                        * state.hp.num_classes, 1),
                        compile_s=round(compile_s, 2), peak_mem_mb=round(peak_mem_mb(jax), 1),
                        devices=state.mesh.devices.size,
                        per_device_batch=parallel.per_device_batch(FLAGS.batch, state.mesh),
                        finite=bool(np.all(np.asarray(m["finite"]))))), flush=True)


def main(argv):
  del argv
  for model in FLAGS.model:
    for r in FLAGS.resolution:
      bench(model, int(r))


if __name__ == "__main__":
  app.run(main)
