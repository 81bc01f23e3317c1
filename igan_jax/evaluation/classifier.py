"""A small CNN classifier for 28×28 datasets: the second evaluation backbone (docs/design.md §5).

Why a second backbone: FID-Inception on 28×28 grayscale images resizes them ~10× to 299×299 and
feeds them to a network trained on ImageNet photos; its features say little about what makes a
shoe look like a shoe, and on 2 CPU cores it runs at ~6 images/s. A classifier trained on the
dataset itself is fast (thousands of images/s) and its penultimate layer is a feature space made
for these images. Numbers from it are *ours*, not comparable with published Inception FIDs: report
them beside the Inception ones, never instead of them.

Network (`SmallCNN`, NHWC, no batch norm so inference needs no running statistics):
  conv 5×5/2 32 → ReLU → conv 3×3/2 64 → ReLU → conv 3×3 128 → ReLU → flatten (7·7·128) →
  dropout → dense 128 → ReLU [= features, 128-d] → dropout → dense num_classes [= logits].
  ~897k parameters (3.6 MB of float32).

Input protocol (`to_input`): uint8 images are used as they are; float images in [−1, 1] are first
quantised exactly as the Inception backbone does, q = clip(round((x + 1)·127.5), 0, 255), so
generated images are seen as if stored as uint8 like the real ones; then x = q/127.5 − 1. Images
that are not 28×28 (a run at 96×96) are resized to 28×28 with `jax.image.resize(..., "linear",
antialias=True)` on the 0..255 values; the real set goes through the same resize.

Shipped weights (our own product, trained by this module fully offline):
`igan_jax/evaluation/weights/<dataset>_classifier.msgpack` (flax.serialization) with a JSON
sidecar `<dataset>_classifier.json` that records the test accuracy, epochs, seed, the training
recipe and the sha256 of the msgpack file; `load_classifier` refuses weights whose sha256 differs.
Train (14 epochs; the shipped weights' test accuracy is in their JSON sidecar; under an hour on
2 CPU cores):

    python -m igan_jax.evaluation.classifier --dataset=fashion_mnist
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from igan_jax import parallel
from igan_jax.compile_options import jit
from igan_jax.data import DatasetError, load_images
from igan_jax.errors import UserError

RESOLUTION = 28
FEATURE_DIM = 128
NUM_CLASSES = 10
# Label names, for the class histogram of generated samples (TFDS's order).
CLASS_NAMES = {
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
    "mnist": tuple(str(i) for i in range(10)),
}
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")

ARCHITECTURE = ("conv5x5/2 32, relu, conv3x3/2 64, relu, conv3x3 128, relu, flatten 6272, "
                "dropout, dense 128, relu [features], dropout, dense num_classes [logits]")

# The training recipe; recorded in the sidecar with the accuracy it reached and the seconds it
# took. Each step of this recipe was tuned by measurement (see _augment).
DEFAULTS = dict(epochs=14, batch_size=128, learning_rate=2e-3, end_learning_rate=5e-5,
                weight_decay=1e-4, dropout=0.3, seed=0, flip=True, shift=1)


class ClassifierError(UserError, RuntimeError):
  """Classifier weights are missing or do not match the recorded sha256; str(e) says what to do."""


class SmallCNN(nn.Module):
  """The 28×28 classifier. `__call__` returns (features, logits)."""
  num_classes: int = NUM_CLASSES
  dropout: float = 0.3

  @nn.compact
  def __call__(self, x, train: bool = False):
    # Strided convolutions, not max pools: on XLA:CPU the max-pool gradient (select-and-scatter)
    # made a pooled net of fewer FLOPs train ~2x slower per step (measured, 2 shared cores).
    x = nn.relu(nn.Conv(32, (5, 5), strides=2, name="conv1")(x))  # 14×14
    x = nn.relu(nn.Conv(64, (3, 3), strides=2, name="conv2")(x))  # 7×7
    x = nn.relu(nn.Conv(128, (3, 3), name="conv3")(x))
    x = x.reshape((x.shape[0], -1))
    x = nn.Dropout(self.dropout / 2, deterministic=not train)(x)
    feats = nn.relu(nn.Dense(FEATURE_DIM, name="fc1")(x))
    h = nn.Dropout(self.dropout, deterministic=not train)(feats)
    return feats, nn.Dense(self.num_classes, name="fc2")(h)


# --------------------------------------------------------------------------------------------
# Input protocol


def _quantise(images) -> jnp.ndarray:
  """uint8 (as is) or float in [−1, 1] (quantised like the Inception backbone) → float32 0..255."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32)
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise TypeError(f"images must be uint8 or float in [-1, 1], got {images.dtype}")
  return jnp.clip(jnp.round((images.astype(jnp.float32) + 1.0) * 127.5), 0.0, 255.0)


def to_input(images) -> jnp.ndarray:
  """uint8 or [−1, 1] float NHWC (1 channel, square) → float32 (N, 28, 28, 1) in [−1, 1]."""
  q = _quantise(jnp.asarray(images))
  n, h, w, c = q.shape
  if (h, w) != (RESOLUTION, RESOLUTION):
    q = jax.image.resize(q, (n, RESOLUTION, RESOLUTION, c), method="linear", antialias=True)
  return q / 127.5 - 1.0


def resize_note(resolution: int) -> str:
  """The resize step of the protocol at `resolution`, for the evaluation record."""
  if resolution == RESOLUTION:
    return "none (native 28x28)"
  return (f"{resolution}x{resolution} -> 28x28 jax.image.resize linear antialias=True on "
          "uint8 values")


def _check_images(images) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 1 or images.shape[1] != images.shape[2]:
    raise ValueError(f"images must be square NHWC grayscale (N, H, W, 1), got {images.shape}")
  return images


# --------------------------------------------------------------------------------------------
# Weights


def weights_path(dataset: str, weights_dir: str | None = None) -> str:
  return os.path.join(weights_dir or WEIGHTS_DIR, f"{dataset}_classifier.msgpack")


def sidecar_path(dataset: str, weights_dir: str | None = None) -> str:
  return os.path.join(weights_dir or WEIGHTS_DIR, f"{dataset}_classifier.json")


def sha256_of(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def available(dataset: str, weights_dir: str | None = None) -> bool:
  """Whether classifier weights for `dataset` are shipped (or were trained into weights_dir)."""
  return (os.path.isfile(weights_path(dataset, weights_dir))
          and os.path.isfile(sidecar_path(dataset, weights_dir)))


def load_info(dataset: str, weights_dir: str | None = None) -> dict:
  """The sidecar JSON of `dataset`'s weights (test accuracy, epochs, seed, sha256, recipe)."""
  path = sidecar_path(dataset, weights_dir)
  if not os.path.isfile(path):
    raise ClassifierError(
        f"no classifier weights for {dataset!r} in {weights_dir or WEIGHTS_DIR}; train them with "
        f"`python -m igan_jax.evaluation.classifier --dataset={dataset}`")
  with open(path) as f:
    return json.load(f)


def _template(num_classes: int) -> dict:
  return jax.eval_shape(lambda: SmallCNN(num_classes).init(
      jax.random.PRNGKey(0), jnp.zeros((1, RESOLUTION, RESOLUTION, 1))))["params"]


@functools.lru_cache(maxsize=8)
def _load_cached(dataset: str, weights_dir: str | None) -> tuple[dict, dict]:
  info = load_info(dataset, weights_dir)
  path = weights_path(dataset, weights_dir)
  if not os.path.isfile(path):
    raise ClassifierError(f"{path} is missing (its sidecar exists); retrain with "
                          f"`python -m igan_jax.evaluation.classifier --dataset={dataset}`")
  got = sha256_of(path)
  if got != info["sha256"]:
    raise ClassifierError(f"{path} has sha256 {got}, but its sidecar records {info['sha256']}; "
                          "the weights were changed or damaged: restore them from git or retrain")
  with open(path, "rb") as f:
    state = flax.serialization.msgpack_restore(f.read())
  template = _template(info.get("num_classes", NUM_CLASSES))
  params = flax.serialization.from_state_dict(template, state)
  # Shapes are checked against the module: a file for another architecture is refused.
  for (kp, want), got_leaf in zip(jax.tree_util.tree_leaves_with_path(template),
                                  jax.tree_util.tree_leaves(params)):
    if tuple(np.shape(got_leaf)) != tuple(want.shape):
      raise ClassifierError(f"{path}: {jax.tree_util.keystr(kp)} has shape "
                            f"{np.shape(got_leaf)}, SmallCNN expects {want.shape}")
  return jax.device_put(params), info


def load_classifier(dataset: str, weights_dir: str | None = None) -> dict:
  """The shipped classifier params of `dataset`, verified against the sidecar's sha256."""
  return _load_cached(dataset, weights_dir)[0]


def weights_sha256(dataset: str, weights_dir: str | None = None) -> str:
  return load_info(dataset, weights_dir)["sha256"]


# --------------------------------------------------------------------------------------------
# Inference


@jit
def _apply(params, images):
  return SmallCNN(num_classes=params["fc2"]["bias"].shape[0]).apply(
      {"params": params}, to_input(images))


def _run(images, dataset: str, params, batch_size: int, weights_dir=None,
         mesh: Mesh | None = None):
  """(features, logits) as np.float32, in fixed-size batches (the last one padded with copies of
  its first image, the padding dropped) so that one shape compiles.

  mesh: each batch split along its batch axis over the `data` mesh (igan_jax/parallel.py), the
  weights replicated once; the batch is rounded up to a multiple of the devices. Per-image
  outputs do not depend on the batch (no batch norm), so the split changes only float rounding;
  a 1-device mesh gives today's bits."""
  images = _check_images(images)
  if params is None:
    params = load_classifier(dataset, weights_dir)
  if mesh is not None:
    params = parallel.put_replicated(params, mesh)
  n = images.shape[0]
  nc = params["fc2"]["bias"].shape[0]
  feats = np.empty((n, FEATURE_DIM), np.float32)
  logits = np.empty((n, nc), np.float32)
  bs = parallel.devices_multiple(max(1, min(batch_size, n)), mesh)
  for start in range(0, n, bs):
    chunk = images[start:start + bs]
    m = chunk.shape[0]
    if m < bs:
      chunk = np.concatenate([chunk, np.repeat(chunk[:1], bs - m, axis=0)])
    if mesh is not None:
      chunk = parallel.put_batch(chunk, mesh, 0)
    f, l = parallel.to_host(_apply(params, chunk))
    feats[start:start + m], logits[start:start + m] = f[:m], l[:m]
  return feats, logits


def compiled_text(params, batch_size: int, mesh: Mesh | None = None,
                  resolution: int = RESOLUTION) -> str:
  """The compiled program of one batch of `_run` as XLA text: with a mesh of N devices the
  per-device program, whose shapes show the batch_size / N images each device computes."""
  images = np.zeros((batch_size, resolution, resolution, 1), np.uint8)
  if mesh is not None:
    params = parallel.put_replicated(params, mesh)
    images = parallel.put_batch(images, mesh, 0)
  return _apply.lower(params, images).compile().as_text()


def classifier_features(images, dataset: str = "fashion_mnist", params: dict | None = None,
                        batch_size: int = 1000, weights_dir: str | None = None,
                        mesh: Mesh | None = None) -> np.ndarray:
  """Penultimate-layer features (after ReLU): uint8 or [−1, 1] float (N, H, W, 1) → np.float32
  (N, 128). The metrics (`igan_jax.evaluation.fid` and its siblings) take them to float64.
  mesh: split each batch over its devices (`_run`)."""
  return _run(images, dataset, params, batch_size, weights_dir, mesh)[0]


def classifier_logits(images, dataset: str = "fashion_mnist", params: dict | None = None,
                      batch_size: int = 1000, weights_dir: str | None = None,
                      mesh: Mesh | None = None) -> np.ndarray:
  """Class logits, np.float32 (N, num_classes); same input protocol as `classifier_features`."""
  return _run(images, dataset, params, batch_size, weights_dir, mesh)[1]


def classifier_outputs(images, dataset: str = "fashion_mnist", params: dict | None = None,
                       batch_size: int = 1000, weights_dir: str | None = None,
                       mesh: Mesh | None = None):
  """(features, logits) in one pass."""
  return _run(images, dataset, params, batch_size, weights_dir, mesh)


# --------------------------------------------------------------------------------------------
# Training


def _augment(rng: np.random.Generator, x: np.ndarray, flip: bool, shift: int) -> np.ndarray:
  """Random translations by up to `shift` pixels (zero fill: the background is 0) and, with
  `flip`, random horizontal flips (Fashion-MNIST's classes are left-right symmetric; MNIST digits
  are not, so flip is off for it). Without them the net overfit: ~91.7% after 8 of 10 epochs
  with training loss still falling (measured)."""
  n, h, w, _ = x.shape
  out = x.copy()
  if flip:
    f = rng.random(n) < 0.5
    out[f] = out[f, :, ::-1]
  if shift:
    padded = np.pad(out, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
    dy, dx = rng.integers(0, 2 * shift + 1, (2, n))
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    out = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
  return out


def train(dataset: str = "fashion_mnist", epochs: int | None = None, seed: int | None = None,
          batch_size: int | None = None, log=print, **overrides) -> tuple[dict, dict]:
  """Trains SmallCNN on `dataset`'s train split; returns (params, info) with the test accuracy.

  Fully offline: the data come from `igan_jax.data.load_images`. Deterministic for a seed on one
  machine (numpy shuffling, jax keys from the seed). AdamW with a cosine decay of the learning
  rate to `end_learning_rate`.
  """
  hp = dict(DEFAULTS, **overrides)
  hp.update({k: v for k, v in dict(epochs=epochs, seed=seed, batch_size=batch_size).items()
             if v is not None})
  if dataset == "mnist":
    hp["flip"] = False  # digits are not mirror-symmetric
  x_train, y_train = load_images(dataset, "train")
  x_test, y_test = load_images(dataset, "test")
  num_classes = int(max(y_train.max(), y_test.max())) + 1
  model = SmallCNN(num_classes=num_classes, dropout=hp["dropout"])
  key = jax.random.PRNGKey(hp["seed"])
  params = model.init(key, jnp.zeros((1, RESOLUTION, RESOLUTION, 1)))["params"]
  steps_per_epoch = len(x_train) // hp["batch_size"]
  schedule = optax.cosine_decay_schedule(hp["learning_rate"], steps_per_epoch * hp["epochs"],
                                         alpha=hp["end_learning_rate"] / hp["learning_rate"])
  tx = optax.adamw(schedule, weight_decay=hp["weight_decay"])
  opt_state = tx.init(params)

  @jit
  def step(params, opt_state, x, y, key):
    def loss_fn(p):
      _, logits = model.apply({"params": p}, to_input(x), train=True, rngs={"dropout": key})
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(hp["seed"])
  t0 = time.perf_counter()
  for epoch in range(hp["epochs"]):
    order = rng.permutation(len(x_train))
    losses = []
    for i in range(steps_per_epoch):
      idx = order[i * hp["batch_size"]:(i + 1) * hp["batch_size"]]
      x = _augment(rng, x_train[idx], hp["flip"], hp["shift"])
      params, opt_state, loss = step(params, opt_state, x, y_train[idx],
                                     jax.random.fold_in(key, epoch * steps_per_epoch + i))
      losses.append(loss)
    acc = accuracy(params, x_test, y_test)
    log(f"epoch {epoch + 1}/{hp['epochs']}: train loss {float(np.mean(jax.device_get(losses))):.4f}"
        f", test accuracy {acc:.4f} ({time.perf_counter() - t0:.0f} s)")
  info = dict(dataset=dataset, test_accuracy=round(float(acc), 6), test_split="test",
              test_count=int(len(y_test)), train_count=int(len(y_train)),
              num_classes=num_classes, feature_dim=FEATURE_DIM, architecture=ARCHITECTURE,
              input="uint8 or [-1,1] float, quantised to uint8 levels, x = q/127.5 - 1",
              train_seconds=round(time.perf_counter() - t0, 1), jax=jax.__version__,
              recipe=dict(hp, optimizer="adamw", schedule="cosine", steps=steps_per_epoch *
                          hp["epochs"]), **{k: hp[k] for k in ("epochs", "seed")})
  return params, info


def accuracy(params, images, labels, batch_size: int = 1000) -> float:
  logits = _run(images, "", params, batch_size)[1]
  return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


def save(params, info: dict, dataset: str, weights_dir: str | None = None) -> str:
  """Writes the msgpack and its sidecar (with the msgpack's sha256); returns the msgpack path."""
  path = weights_path(dataset, weights_dir)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  data = flax.serialization.msgpack_serialize(
      jax.tree_util.tree_map(np.asarray, flax.serialization.to_state_dict(params)))
  with open(path + ".tmp", "wb") as f:
    f.write(data)
  os.replace(path + ".tmp", path)
  info = dict(info, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data),
              file=os.path.basename(path))
  side = sidecar_path(dataset, weights_dir)
  with open(side + ".tmp", "w") as f:
    json.dump(info, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(side + ".tmp", side)
  _load_cached.cache_clear()
  return path


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m igan_jax.evaluation.classifier",
                              description=__doc__.split("\n")[0])
  p.add_argument("--dataset", default="fashion_mnist", choices=("fashion_mnist", "mnist"))
  p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
  p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
  p.add_argument("--batch_size", type=int, default=DEFAULTS["batch_size"])
  p.add_argument("--weights_dir", default=None,
                 help=f"where to write the weights (default: {WEIGHTS_DIR})")
  args = p.parse_args(argv)
  try:
    params, info = train(args.dataset, epochs=args.epochs, seed=args.seed,
                         batch_size=args.batch_size)
  except DatasetError as e:
    print(f"igan_jax.evaluation.classifier: error: {e}", file=sys.stderr)
    return 2
  path = save(params, info, args.dataset, args.weights_dir)
  print(f"test accuracy {info['test_accuracy']:.4f} on {info['test_count']} images; "
        f"wrote {path} ({os.path.getsize(path):,} bytes)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
