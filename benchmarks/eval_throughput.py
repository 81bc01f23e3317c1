"""Evaluation throughput: images per second through each evaluation backbone, and the generator.

    python benchmarks/eval_throughput.py --backbones=classifier,inception,generator

Prints one JSON line per backbone: backbone, device, input (image shape in), batch, images
(timed), img_per_s (median over repeats), compile_s (first call, compile included), and for
Inception the estimated minutes for 10,000 images (the paper's N, docs/paper.md §3). Inputs are
random uint8 28×28×1 images (a backbone's speed does not depend on their content); "inception"
includes the resize to 299×299, as `image_features` does in an evaluation. "generator" is the IGAN
generator of experiments/fashion_mnist.py at random init (`inference.generate`, batch 500).
"train_classifier" / "train_inception" time FID during training's one jitted program
(evaluation.during_training.TrainingEvaluator: that generator → quantise → backbone, at the
config's eval batch sizes) and report the estimated seconds of feature extraction per evaluation
at config.eval.train_num_samples (the Fréchet distance on top is not included).
Never asserts on time: the machine is shared, read the numbers with `load` beside them.
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
flags.DEFINE_list("backbones", ["classifier", "inception"],
                  "any of classifier, inception, generator, train_classifier, train_inception")
flags.DEFINE_integer("classifier_batch", 1000, "classifier batch size")
flags.DEFINE_integer("classifier_images", 5000, "images per timed classifier repeat")
flags.DEFINE_integer("inception_batch", 50, "Inception batch size (igan_jax default)")
flags.DEFINE_integer("inception_images", 100, "images per timed Inception repeat")
flags.DEFINE_integer("repeats", 3, "timed repeats; the median is reported")
flags.DEFINE_string("dataset", "fashion_mnist", "classifier weights to use")
flags.DEFINE_integer("train_images", 0, "images per timed repeat of train_* (0 = one "
                     "classifier batch, 2 Inception batches)")



def _time(fn, images, batch, repeats):
  """(compile_s, median images/s) of fn(images); the first call, on one full batch, compiles the
  batch shape the timed calls use."""
  t0 = time.perf_counter()
  fn(images[:batch])
  compile_s = time.perf_counter() - t0
  rates = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn(images)
    rates.append(len(images) / (time.perf_counter() - t0))
  return compile_s, statistics.median(rates)


def _fashion_mnist_state():
  from igan_jax import config as config_lib, state
  config = config_lib.load_config(os.path.join(os.path.dirname(__file__), "..", "experiments",
                                               "fashion_mnist.py"))
  return config, state.create_train_state(config)


def _training_program(name: str, variables):
  """(fn over latents, batch in images, train_num_samples, z_dim) for train_<backbone>."""
  import jax
  from igan_jax.evaluation import during_training, settings
  config, state = _fashion_mnist_state()
  s = settings.settings(config)
  backbone = name[len("train_"):]
  bs = s["batch_size"] if backbone == "classifier" else s["inception_batch_size"]
  program = during_training.fused_program(backbone)
  variables = jax.device_put(variables)

  def fn(z):
    outs = [program(state, state.g.params, variables, z[i:i + bs]) for i in range(0, len(z), bs)]
    return jax.block_until_ready(outs)
  return fn, bs, config.eval.train_num_samples, state.hp.z_dim


def main(argv):
  del argv
  import jax
  import numpy as np

  rng = np.random.default_rng(0)
  common = dict(device=device_name(jax), backend=jax.default_backend(), jax=jax.__version__,
                load_1min=round(os.getloadavg()[0], 2))
  for name in FLAGS.backbones:
    row = dict(backbone=name)
    if name == "classifier":
      from igan_jax.evaluation import classifier as clf
      params = clf.load_classifier(FLAGS.dataset)
      bs = FLAGS.classifier_batch
      images = rng.integers(0, 256, (FLAGS.classifier_images, 28, 28, 1), dtype=np.uint8)
      fn = lambda x: clf.classifier_features(x, FLAGS.dataset, params, batch_size=bs)  # noqa
      compile_s, rate = _time(fn, images, bs, FLAGS.repeats)
      row.update(input="28x28x1 uint8", batch=bs, images=len(images))
    elif name == "inception":
      from igan_jax.evaluation import inception
      from igan_jax.evaluation.inception_weights import WeightsError
      try:
        variables = jax.device_put(inception.load_params())
      except WeightsError as e:
        print(json.dumps(dict(row, skipped=str(e).splitlines()[0], **common)), flush=True)
        continue
      bs = FLAGS.inception_batch
      images = rng.integers(0, 256, (FLAGS.inception_images, 28, 28, 1), dtype=np.uint8)
      fn = lambda x: inception.image_features(x, params=variables, batch_size=bs)  # noqa
      compile_s, rate = _time(fn, images, bs, FLAGS.repeats)
      row.update(input="28x28x1 uint8 -> 299x299x3", batch=bs, images=len(images),
                 minutes_per_10k=round(10_000 / rate / 60, 1))
    elif name == "generator":
      from igan_jax.evaluation import workdir
      _, state = _fashion_mnist_state()
      bs = 500
      fn = lambda x: workdir.state_images(state, 0, len(x), bs)  # noqa
      compile_s, rate = _time(fn, np.zeros(2000), bs, FLAGS.repeats)
      row.update(input="z (100,)", output="28x28x1 uint8", batch=bs, images=2000)
    elif name in ("train_classifier", "train_inception"):
      from igan_jax.evaluation import sampling
      if name == "train_classifier":
        from igan_jax.evaluation import classifier as clf
        variables = clf.load_classifier(FLAGS.dataset)
      else:
        from igan_jax.evaluation import inception
        from igan_jax.evaluation.inception_weights import WeightsError
        try:
          variables = inception.load_params()
        except WeightsError as e:
          print(json.dumps(dict(row, skipped=str(e).splitlines()[0], **common)), flush=True)
          continue
      fn, bs, n_train, z_dim = _training_program(name, variables)
      n = FLAGS.train_images or (bs if name == "train_classifier" else 2 * bs)
      z = np.asarray(sampling.eval_latents(0, -(-n // bs) * bs, z_dim))
      compile_s, rate = _time(fn, z, bs, FLAGS.repeats)
      row.update(input="z (100,) -> IGAN fashion_mnist generator -> " + name[len("train_"):],
                 batch=bs, images=len(z), train_num_samples=n_train,
                 seconds_per_evaluation=round(n_train / rate, 1))
    else:
      raise app.UsageError(f"unknown backbone {name!r}")
    row.update(img_per_s=round(rate, 2), compile_s=round(compile_s, 1), **common)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
  app.run(main)
