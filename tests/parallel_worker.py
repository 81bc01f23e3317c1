"""The 4-device checks of tests/test_parallel.py, run in one subprocess (the device count is fixed
when JAX starts: XLA_FLAGS=--xla_force_host_platform_device_count=4, set by the test).

Prints one JSON object on its last line of stdout; the test asserts on it. One JAX start and
one compilation of each program serve every check:

- `match`: a tiny igan and a tiny igan_vn, 2 iterations on 1 device and on 4 from the same
  state and data: the largest relative difference of each metric, and of each parameter leaf
  max |Δ| and max |value|. Adam's eps is 1e-3 here (EPS): with the default 1e-8 the first
  update is ±lr·sign(g) wherever |g| is near rounding noise, so two summation orders of the
  same gradient move such weights apart by up to 2·lr and the second iteration's losses differ
  by ~2e-3 (measured); with eps ≫ that noise the update is continuous in g, and what is left to
  compare is the data-parallel step itself.
- `repeat` / `resume`: at 4 devices, two runs bit-identical; 2 + checkpoint + 2 iterations
  bit-identical to 4 straight.
- `cross`: a checkpoint saved on 4 devices restored on 1 (and the reverse): the same arrays,
  the restoring mesh's sharding, and a further iteration that runs.
- `read_only`: checkpoint.restore_read_only of a run whose config asks for 8 devices.
- `put_batch`: a streamed host batch split over the 4 devices.
- `hlo`: the compiled step's per-device program: the shapes of G's first layer and of D's
  input convolution.
- `features`: the evaluation's backbone over the mesh (a randomly initialised classifier: a toy
  backbone that compiles in seconds): 13 images in batches of 6 (rounded up to 8 on 4 devices,
  the last batch padded) on 4 devices against a 1-device mesh, the 1-device mesh against no mesh
  (today's path), and the compiled per-device programs of the feature function and of FID during
  training's fused generator → backbone program.
"""
import json
import os
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import ROOT, tiny_config, write_workdir  # noqa: E402

sys.path.insert(0, ROOT)
from igan_jax import checkpoint, input_pipeline, parallel, train  # noqa: E402
from igan_jax.evaluation import classifier  # noqa: E402
from igan_jax.evaluation.during_training import fused_program  # noqa: E402

BATCH = 8  # global; 2 per device on 4 devices
EPS = 1e-3  # Adam's eps in the comparisons (module docstring)


def data_for(config, mesh, n=32):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (n, 28, 28, 1), np.uint8)
  classes = input_pipeline.model_classes(config)
  if classes is None:
    return input_pipeline.ResidentData(images=parallel.put_replicated(images, mesh))
  order, starts, counts = input_pipeline.class_index(np.arange(n) % len(classes),
                                                     range(len(classes)))
  return input_pipeline.ResidentData(*parallel.put_replicated((images, order, starts, counts),
                                                              mesh))


def leaves(tree):
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(path): np.asarray(x) for path, x in flat}


def bit_equal(a, b):
  la, lb = leaves(a), leaves(b)
  return la.keys() == lb.keys() and all(np.array_equal(la[k], lb[k]) for k in la)


def compare(config_1, config_4, k=2):
  s1, s4 = train.create_train_state(config_1), train.create_train_state(config_4)
  d1, d4 = data_for(config_1, s1.mesh), data_for(config_4, s4.mesh)
  a, ma = train.train_steps(s1, d1, k, "python")
  b, mb = train.train_steps(s4, d4, k, "python")
  metrics = {key: float(np.max(np.abs(np.asarray(ma[key]) - np.asarray(mb[key]))
                               / np.maximum(np.abs(np.asarray(ma[key])), 1e-12)))
             for key in ("d_loss", "d_adv", "gp", "d_real", "d_fake", "d_grad_norm", "g_loss",
                         "g_grad_norm")}
  la = leaves({"g": a.g.params, "d": a.d.params})
  lb = leaves({"g": b.g.params, "d": b.d.params})
  params = {name: [float(np.max(np.abs(la[name] - lb[name]))), float(np.max(np.abs(la[name])))]
            for name in la}
  return dict(metrics=metrics, params=params,
              devices=[len(a.mesh.devices.flat), len(b.mesh.devices.flat)]), (s1, d1, s4, d4)


def scaled_diff(a, b):
  """[max |a − b|, max |b|] of each array of two equal-shaped tuples."""
  return [[float(np.max(np.abs(x - y))), float(np.max(np.abs(y)))] for x, y in zip(a, b)]


# The classifier's conv1 output (14×14×32) at 2 (= BATCH / 4) and at BATCH images per device,
# and its uint8 input images (the feature function's; the fused program's images are floats).
FEATURE_SHAPES = ("f32[2,14,14,32]", f"f32[{BATCH},14,14,32]", "u8[2,28,28,1]",
                  f"u8[{BATCH},28,28,1]")


def features(s1, s4):
  """The `features` checks (module docstring); s1, s4: a tiny igan's state on 1 and 4 devices."""
  params = classifier.SmallCNN().init(jax.random.PRNGKey(0),
                                      np.zeros((1, 28, 28, 1), np.float32))["params"]
  images = np.random.default_rng(1).integers(0, 256, (13, 28, 28, 1), np.uint8)

  def outputs(mesh):
    return classifier.classifier_outputs(images, params=params, batch_size=6, mesh=mesh)
  unsharded, one, four = outputs(None), outputs(parallel.data_mesh(1)), outputs(s4.mesh)
  text = classifier.compiled_text(params, BATCH, s4.mesh)
  program = fused_program("classifier")
  z = np.random.default_rng(2).standard_normal((BATCH, s4.hp.z_dim)).astype(np.float32)

  def fused(state):
    args = (state, state.g.params, parallel.put_replicated(params, state.mesh),
            parallel.put_batch(z, state.mesh, 0))
    return jax.device_get(program(*args)), program.lower(*args).compile().as_text()
  (fused_1, _), (fused_4, fused_text) = fused(s1), fused(s4)
  return dict(
      one_equals_unsharded=all(np.array_equal(a, b) for a, b in zip(one, unsharded)),
      four_vs_one=scaled_diff(four, one), fused_four_vs_one=scaled_diff(fused_4, fused_1),
      hlo={shape: text.count(shape) for shape in FEATURE_SHAPES},
      fused_hlo={shape: fused_text.count(shape) for shape in FEATURE_SHAPES[:2]})


T0 = time.perf_counter()


def lap(what):
  """Seconds since the start on stderr: where the subprocess's time goes (compiles, mostly)."""
  print(f"[parallel_worker] {time.perf_counter() - T0:6.1f} s  {what}", file=sys.stderr,
        flush=True)


def main():
  out = {"device_count": jax.device_count()}
  igan_1 = tiny_config(batch_size=BATCH, n_critic=1, num_devices=1, **{"optim.eps": EPS})
  igan_4 = tiny_config(batch_size=BATCH, n_critic=1, num_devices=0, **{"optim.eps": EPS})
  lap("start")
  out["match_igan"], (s1, d1, s4, d4) = compare(igan_1, igan_4)
  lap("igan on 1 and 4 devices")
  # vmap: the class stack as accelerators run it (and a smaller program to compile than unroll).
  vn = {"model.name": "igan_vn", "model.num_classes": 2, "model.class_stack": "vmap",
        "optim.eps": EPS, "n_critic": 1, "batch_size": BATCH}
  out["match_igan_vn"], _ = compare(tiny_config(num_devices=1, **vn),
                                    tiny_config(num_devices=0, **vn))
  lap("igan_vn on 1 and 4 devices")

  # Two runs at 4 devices; resume at 4 devices through a checkpoint.
  a, ma = train.train_steps(s4, d4, 2, "python")
  b, mb = train.train_steps(train.create_train_state(igan_4), d4, 2, "python")
  out["repeat"] = bit_equal(ma, mb) and bit_equal(a, b)
  straight, _ = train.train_steps(a, d4, 2, "python")
  directory = tempfile.mkdtemp()
  ckpt = checkpoint.Checkpointer(os.path.join(directory, "four"))
  ckpt.save(a)
  ckpt.wait()
  restored = ckpt.restore(train.create_train_state(igan_4))
  ckpt.close()
  resumed, _ = train.train_steps(restored, d4, 2, "python")
  out["resume"] = bit_equal(straight, resumed)
  lap("repeat and resume")

  # Saved on 4 devices, restored on 1; and saved on 1, restored on 4.
  ckpt = checkpoint.Checkpointer(os.path.join(directory, "four"))
  on_1 = ckpt.restore(train.create_train_state(igan_1))
  ckpt.close()
  cont_1, m1 = train.train_steps(on_1, d1, 1, "python")
  one, _ = train.train_steps(s1, d1, 2, "python")
  ckpt = checkpoint.Checkpointer(os.path.join(directory, "one"))
  ckpt.save(one)
  ckpt.wait()
  on_4 = ckpt.restore(train.create_train_state(igan_4))
  ckpt.close()
  cont_4, m4 = train.train_steps(on_4, d4, 1, "python")
  out["cross"] = dict(
      four_to_one_equal=bit_equal(a, on_1), one_to_four_equal=bit_equal(one, on_4),
      four_to_one_devices=sorted({len(x.sharding.device_set)
                                  for x in jax.tree_util.tree_leaves(on_1)}),
      one_to_four_devices=sorted({len(x.sharding.device_set)
                                  for x in jax.tree_util.tree_leaves(on_4)}),
      continued=[int(cont_1.step), int(cont_4.step)],
      finite=[bool(np.all(m1["finite"])), bool(np.all(m4["finite"]))])

  # Read-only (evaluation, samples): a run's config asking for more devices than this machine
  # has is read on all of this machine's devices.
  more = tiny_config(batch_size=BATCH, n_critic=1, num_devices=8, **{"optim.eps": EPS})
  read, _ = checkpoint.restore_read_only(more, write_workdir(os.path.join(directory, "wd"), more,
                                                             a))
  out["read_only"] = dict(equal=bit_equal(a, read), devices=len(read.mesh.devices.flat))
  lap("across device counts")
  # A streamed host batch (n_critic, N, B, H, W, C) split over the 4 devices along B.
  host = np.arange(2 * 2 * BATCH * 12, dtype=np.uint8).reshape(2, 2, BATCH, 2, 2, 3)
  put = parallel.put_batch(host, s4.mesh, 2)
  out["put_batch"] = dict(equal=bool(np.array_equal(np.asarray(put), host)),
                          shards=sorted({tuple(x.data.shape) for x in put.addressable_shards}),
                          devices=len(put.sharding.device_set))
  # The per-device program of the 4-device step.
  text = train.compiled_step_text(s4, d4)
  per_device = BATCH // 4
  out["hlo"] = {shape: text.count(shape) for shape in (
      f"f32[{per_device},100]", f"f32[{BATCH},100]",             # G's first layer's input z
      f"f32[{per_device},28,28,1]", f"f32[{BATCH},28,28,1]")}     # D's input images
  lap("compiled text")
  out["features"] = features(s1, s4)
  lap("features")
  print(json.dumps(out))


if __name__ == "__main__":
  main()
