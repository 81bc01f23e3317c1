"""Honest evaluation of a trained run: `evaluate_workdir(config, workdir)`.

What one call does, for the checkpoint `step` (default: the latest) in `<workdir>/checkpoints`:
  1. restores the generator and draws `num_samples` images per seed with `train.generate`
     (inference mode), from latents z = N(0, I) drawn with jax.random.fold_in(PRNGKey(0xE7A1),
     seed): fixed per seed, and independent of the run's config.seed and of its training keys;
  2. quantises them to uint8 exactly as the real images are stored (clean-fid's lesson, see
     Parmar et al. 2022), before any backbone sees them;
  3. for each backbone ("classifier": our 28×28 CNN, `evaluation/classifier.py`; "inception":
     the FID Inception-V3 at 299×299, `evaluation/inception.py`), computes against N real images
     of the *test* split: FID (Heusel et al. 2017; the paper's eq. 13), KID (Bińkowski et al. 2018),
     improved precision/recall (k=3; Kynkäänniemi et al. 2019) and density/coverage (k=5; Naeem
     et al. 2020), all float64 on the features (`evaluation/fid.py`); mean ± sd over the seeds;
  4. beside every number the real-vs-real floor: N images of the *train* split against the same
     N test images, through the same pipeline. FID is biased and the bias depends on N, so a
     generated FID means little without the floor at the same N;
  5. with the classifier (labelled 28×28 data): the class histogram of the generated samples,
     its entropy, KL(generated ‖ real test labels), and the number of classes with ≥ 1% share;
     the same for the classifier's predictions on the real test images, as the reference;
  6. writes everything, with the protocol (dataset, split, resolution, N, resize, backbone,
     weights hash, seeds, latents), to `<workdir>/eval/<step>.json` and prints a table.

The paper's protocol is 10,000 generated vs 10,000 real with Inception. The Inception
port runs ~6.5 images/s on 2 CPU cores, so N is set per backbone: `inception_samples` (0 = the
same as `num_samples`). Compare numbers only at equal N and equal protocol.

Real-set features (and their float64 mean/covariance) are cached per (dataset, split,
resolution, backbone, N) as `.npz` in `$IGAN_JAX_CACHE/eval_reference/` (default
`~/.cache/igan_jax/eval_reference/`). The protocol is stored inside, including the sha256 of the
selected real images and of the backbone weights; any mismatch recomputes and overwrites.

Settings come from the arguments, else `config.eval` (when the config has one), else
`DEFAULTS`.

`--checkpoint=best` (step="best") evaluates the state that FID during training kept in
`<workdir>/checkpoints/best/` (checkpoint.BestCheckpointer).

FID during training: `TrainingEvaluator(config)` — N = config.eval.train_num_samples images of
fixed latents (the evaluation's seed 0) through one jitted generator → backbone program, against
the same cached real reference as above; see its docstring.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import time
from typing import Any, Callable, Sequence

import numpy as np

BACKBONES = ("classifier", "inception")
DEFAULTS = dict(
    num_samples=10_000,        # the paper's experiments: 10,000 generated vs 10,000 real
    seeds=3,                   # latent seeds 0..seeds-1 (or an explicit list)
    backbones=BACKBONES,
    inception_samples=0,       # N for the Inception backbone; 0 = num_samples
    batch_size=500,            # generator and classifier batch
    inception_batch_size=50,
    use_ema=False,             # evaluate the EMA generator (needs config.ema_decay > 0)
    kid_subsets=100,
    kid_subset_size=1000,
    pr_k=3,                    # Kynkäänniemi et al. 2019
    dc_k=5,                    # Naeem et al. 2020
)
EVAL_KEY = 0xE7A1              # base PRNG key of the evaluation latents (not the run's seed)
REAL_SUBSET_SEED = 0           # which N of the M real images, when N < M
REAL_SPLIT, FLOOR_SPLIT = "test", "train"
CACHE_FORMAT = 1
METRICS = ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage")


class EvaluationError(RuntimeError):
  """The evaluation cannot run as asked; str(e) says what to do."""


def _log(msg: str):
  print(f"[igan_jax] evaluate: {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Settings


def settings(config, **overrides) -> dict:
  """The evaluation settings: `overrides` that are not None, else config.eval, else DEFAULTS."""
  from igan_jax.config import ConfigError

  ev = config.get("eval", None) if hasattr(config, "get") else None
  out = {}
  for key, default in DEFAULTS.items():
    value = overrides.get(key)
    if value is None and ev is not None:
      value = ev.get(key, None)
    out[key] = default if value is None else value
  unknown = set(overrides) - set(DEFAULTS)
  if unknown:
    raise TypeError(f"unknown evaluation settings {sorted(unknown)}")

  def check(cond, key, msg):
    if not cond:
      raise ConfigError(f"config.eval.{key}: {msg}")

  seeds = out["seeds"]
  if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
    check(seeds >= 1, "seeds", f"must be ≥ 1 (the number of latent seeds), got {seeds}")
    out["seeds"] = list(range(int(seeds)))
  else:
    check(isinstance(seeds, (list, tuple)) and len(seeds) >= 1
          and all(isinstance(s, (int, np.integer)) for s in seeds), "seeds",
          f"must be a count or a list of ints, got {seeds!r}")
    out["seeds"] = [int(s) for s in seeds]
  backbones = out["backbones"]
  if isinstance(backbones, str):
    backbones = tuple(b.strip() for b in backbones.split(",") if b.strip())
  check(len(backbones) >= 1 and all(b in BACKBONES for b in backbones), "backbones",
        f"must be some of {BACKBONES}, got {tuple(backbones)!r}")
  out["backbones"] = tuple(dict.fromkeys(backbones))
  for key in ("num_samples", "inception_samples", "batch_size", "inception_batch_size",
              "kid_subsets", "kid_subset_size", "pr_k", "dc_k"):
    v = out[key]
    check(isinstance(v, (int, np.integer)) and not isinstance(v, bool), key,
          f"must be an integer, got {v!r}")
    out[key] = int(v)
  check(out["num_samples"] >= 10, "num_samples", f"must be ≥ 10, got {out['num_samples']}")
  check(out["inception_samples"] == 0 or out["inception_samples"] >= 10, "inception_samples",
        f"must be 0 (= num_samples) or ≥ 10, got {out['inception_samples']}")
  for key in ("batch_size", "inception_batch_size", "kid_subsets", "pr_k", "dc_k"):
    check(out[key] >= 1, key, f"must be ≥ 1, got {out[key]}")
  check(out["kid_subset_size"] >= 2, "kid_subset_size",
        f"must be ≥ 2, got {out['kid_subset_size']}")
  out["use_ema"] = bool(out["use_ema"])
  return out


def samples_for(backbone: str, s: dict) -> int:
  if backbone == "inception" and s["inception_samples"]:
    return s["inception_samples"]
  return s["num_samples"]


def cache_root(cache_dir: str | None = None) -> str:
  root = cache_dir or os.environ.get("IGAN_JAX_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "igan_jax")
  return os.path.join(root, "eval_reference")


# ---------------------------------------------------------------------------------------------
# Backbones: (name) -> extractor, protocol


class _Backbone:
  """One feature extractor with what the record needs to know about it.

  extract(uint8 images) -> (features (N, D) float32, logits (N, K) or None); `variables`: the
  network's weights (host arrays), for programs that run it themselves (TrainingEvaluator).
  """

  def __init__(self, name: str, extract: Callable, protocol: dict, has_logits: bool = False,
               variables: Any = None):
    self.name, self.extract, self.protocol, self.has_logits = name, extract, protocol, has_logits
    self.variables = variables


def _classifier_backbone(dataset: str, resolution: int, s: dict) -> _Backbone:
  from igan_jax.evaluation import classifier as clf

  if not clf.available(dataset):
    raise EvaluationError(
        f"no classifier weights are shipped for {dataset!r}; train them with `python -m "
        f"igan_jax.evaluation.classifier --dataset={dataset}`")
  try:
    params = clf.load_classifier(dataset)
  except clf.ClassifierError as e:
    raise EvaluationError(str(e)) from e
  info = clf.load_info(dataset)

  def outputs(images):
    return clf.classifier_outputs(images, dataset, params, batch_size=s["batch_size"])

  protocol = dict(backbone="classifier", network="igan_jax SmallCNN (ours), penultimate ReLU",
                  feature_dim=clf.FEATURE_DIM, weights=os.path.relpath(
                      clf.weights_path(dataset), os.path.dirname(os.path.dirname(__file__))),
                  weights_sha256=info["sha256"], classifier_test_accuracy=info["test_accuracy"],
                  input="uint8; x = q/127.5 - 1", resize=clf.resize_note(resolution))
  return _Backbone("classifier", outputs, protocol, has_logits=True, variables=params)


def _inception_backbone(resolution: int, s: dict) -> _Backbone:
  from igan_jax.evaluation import inception
  from igan_jax.evaluation.inception_weights import WeightsError

  try:
    variables = inception.load_params()
  except WeightsError as e:
    raise EvaluationError(f"FID Inception weights unavailable: {str(e).splitlines()[0]}") from e
  protocol = dict(backbone="inception", network="FID Inception-V3 (TF inception-2015-12-05), "
                  "pool3", feature_dim=inception.FEATURE_DIM, weights_sha1=inception.WEIGHTS_SHA1,
                  input="uint8, grayscale tiled to 3 channels, x = q/127.5 - 1",
                  resize=(f"{resolution}x{resolution} -> {inception.RESOLUTION}x"
                          f"{inception.RESOLUTION} jax.image.resize bilinear antialias=False "
                          "on uint8 values"))

  def extract(images):
    return inception.image_features(images, params=variables,
                                    batch_size=s["inception_batch_size"]), None
  return _Backbone("inception", extract, protocol, variables=variables)


# ---------------------------------------------------------------------------------------------
# Real reference sets (cached)


def real_subset(num_total: int, n: int) -> tuple[np.ndarray, str]:
  """Indices of the n real images used (all of them, in order, when n = num_total)."""
  if n > num_total:
    raise EvaluationError(f"asked for {n} real images but the split has {num_total}; lower "
                          "config.eval.num_samples / inception_samples")
  if n == num_total:
    return np.arange(n), "all, in order"
  idx = np.sort(np.random.default_rng(REAL_SUBSET_SEED).choice(num_total, n, replace=False))
  return idx, (f"np.random.default_rng({REAL_SUBSET_SEED}).choice({num_total}, {n}, "
               "replace=False), sorted")


def model_classes(config) -> tuple[int, ...] | None:
  """The dataset labels of a class-stacked model's classes 0..N-1 (igan_v2/vn: data.classes, or
  labels 0..N-1), None for the one-class models."""
  from igan_jax import models
  if config.model.name not in models.CLASS_STACKED:
    return None
  n = models.num_classes(config.model)
  return tuple(int(c) for c in (config.data.get("classes", ()) or range(n)))


def classes_tag(classes: Sequence[int] | None) -> str:
  """The part of a reference's cache name that says which classes it holds ("" = all)."""
  return "" if classes is None else "classes" + "_".join(map(str, classes))


def select_real(labels: np.ndarray, n: int, classes: Sequence[int] | None = None
                ) -> tuple[np.ndarray, str]:
  """Indices of the n real images used, and how they were chosen.

  classes None: `real_subset` (all images in order, or a seeded subset). Otherwise class-balanced
  over `classes` (n // K each, the first n % K classes one more), a seeded subset per class:
  a class-stacked generator makes the same number of images of every class (and its training
  draws every class with probability 1/K), so the reference must too.
  """
  if classes is None:
    return real_subset(len(labels), n)
  labels = np.asarray(labels)
  k = len(classes)
  rng = np.random.default_rng(REAL_SUBSET_SEED)
  counts = [n // k + (j < n % k) for j in range(k)]
  idx = []
  for c, m in zip(classes, counts):
    rows = np.flatnonzero(labels == c)
    if m > len(rows):
      raise EvaluationError(f"asked for {m} real images of class {c} ({n} over classes "
                            f"{list(classes)}) but the split has {len(rows)}; lower "
                            "config.eval.num_samples / train_num_samples")
    idx.append(rows if m == len(rows) else rng.choice(rows, m, replace=False))
  return np.sort(np.concatenate(idx)), (
      f"class-balanced over labels {list(classes)} ({counts} each): per class in that order "
      f"np.random.default_rng({REAL_SUBSET_SEED}).choice(rows of the class, m, replace=False), "
      "sorted")


def reference_features(backbone: _Backbone, dataset: str, split: str, resolution: int,
                       images: np.ndarray, cache_dir: str | None = None, tag: str = ""):
  """Features (and logits, for the classifier) and FeatureStats of a real image set, from the
  cache when its stored protocol equals this one.

  `tag` names a kind of subset in the cache file name and the protocol (e.g. "classes3_7" for
  a class-stacked model's classes), so that sets that differ by design do not overwrite each
  other's cache file. Returns (features, logits or None, stats, info), info = {"path", "cache":
  "hit" | "miss" | "recomputed", "protocol"}.
  """
  from igan_jax.evaluation import FeatureStats

  n = images.shape[0]
  protocol = dict(format=CACHE_FORMAT, dataset=dataset, split=split, resolution=resolution,
                  n=n, images_sha256=hashlib.sha256(np.ascontiguousarray(images)).hexdigest(),
                  **backbone.protocol)
  protocol.pop("classifier_test_accuracy", None)
  protocol.pop("weights", None)
  if tag:
    protocol["subset"] = tag
  name = (f"{dataset.replace('/', '_')}-{split}-{resolution}-{backbone.name}-{n}"
          f"{'-' + tag if tag else ''}.npz")
  path = os.path.join(cache_root(cache_dir), name)
  status = "miss"
  if os.path.exists(path):
    try:
      with np.load(path, allow_pickle=False) as z:
        stored = json.loads(str(z["protocol"]))
        if stored == protocol:
          logits = z["logits"] if "logits" in z.files else None
          return (z["features"], logits, FeatureStats.from_dict(z),
                  dict(path=path, cache="hit", protocol=protocol))
        diff = sorted(k for k in set(stored) | set(protocol) if stored.get(k) != protocol.get(k))
        _log(f"cached reference {path} was made with another protocol ({', '.join(diff)} "
             "differ); recomputing it")
    except (OSError, ValueError, KeyError) as e:
      _log(f"cached reference {path} is unreadable ({type(e).__name__}: {e}); recomputing it")
    status = "recomputed"
  t0 = time.perf_counter()
  feats, logits = backbone.extract(images)
  feats = np.asarray(feats, np.float32)
  stats = FeatureStats(feats.shape[1])
  stats.update(feats)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}.npz"  # same directory: os.replace is atomic
  extra = {} if logits is None else dict(logits=np.asarray(logits, np.float32))
  np.savez(tmp, features=feats, protocol=np.array(json.dumps(protocol, sort_keys=True)),
           **stats.to_dict(), **extra)
  os.replace(tmp, path)
  _log(f"{backbone.name} features of {n} {dataset} {split} images: "
       f"{time.perf_counter() - t0:.1f} s (cached in {path})")
  return feats, logits, stats, dict(path=path, cache=status, protocol=protocol)


# ---------------------------------------------------------------------------------------------
# Metrics


def feature_metrics(real: np.ndarray, real_stats, fake: np.ndarray, s: dict) -> dict:
  """FID, KID (mean, std over subsets), precision, recall, density, coverage of fake vs real."""
  from igan_jax.evaluation import FeatureStats, density_coverage, frechet_distance, kid, \
      precision_recall

  fake_stats = FeatureStats(fake.shape[1])
  fake_stats.update(fake)
  fid = frechet_distance(real_stats.mean(), real_stats.cov(), fake_stats.mean(), fake_stats.cov())
  kid_mean, kid_std = kid(real, fake, num_subsets=s["kid_subsets"],
                          subset_size=s["kid_subset_size"], seed=0)
  precision, recall = precision_recall(real, fake, k=s["pr_k"])
  density, coverage = density_coverage(real, fake, k=s["dc_k"])
  return dict(fid=fid, kid=kid_mean, kid_std=kid_std, precision=precision, recall=recall,
              density=density, coverage=coverage)


def class_metrics(logits: np.ndarray, real_labels: np.ndarray, num_classes: int) -> dict:
  """Class histogram of predictions and how far it is from the real label distribution.

  entropy in nats (max ln K); kl = KL(p_pred ‖ p_real) in nats, finite even when the
  generator misses a class (the direction that would be infinite then is not used).
  """
  pred = np.argmax(logits, axis=1)
  counts = np.bincount(pred, minlength=num_classes)
  p = counts / counts.sum()
  q = np.bincount(real_labels, minlength=num_classes) / len(real_labels)
  nz = p > 0
  entropy = max(0.0, float(-(p[nz] * np.log(p[nz])).sum()))  # no "-0.0"
  kl = float((p[nz] * np.log(p[nz] / q[nz])).sum()) if np.all(q[nz] > 0) else math.inf
  z = logits - logits.max(axis=1, keepdims=True)
  probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
  return dict(histogram=counts.tolist(), share=p.tolist(), entropy=entropy, kl_to_real=kl,
              classes_ge_1pct=int((p >= 0.01).sum()), mean_confidence=float(probs.max(1).mean()))


def _mean_sd(rows: list[dict], keys) -> tuple[dict, dict]:
  """Mean and sample sd (ddof=1; None for a single seed) of each key over the seeds."""
  mean, sd = {}, {}
  for k in keys:
    v = np.asarray([r[k] for r in rows], np.float64)
    mean[k] = float(v.mean(axis=0)) if v.ndim == 1 else v.mean(axis=0).tolist()
    if len(rows) < 2:
      sd[k] = None
    else:
      s = v.std(axis=0, ddof=1)
      sd[k] = float(s) if v.ndim == 1 else s.tolist()
  return mean, sd


# ---------------------------------------------------------------------------------------------
# Generation


def eval_latents(seed: int, n: int, z_dim: int):
  import jax
  return jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(EVAL_KEY), seed), (n, z_dim))


def quantise(images: np.ndarray) -> np.ndarray:
  """[−1, 1] floats → uint8, q = clip(round((x + 1)·127.5), 0, 255) (round half to even), the
  same rule the backbones apply to float input."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def images_per_latent(state) -> int:
  """K: how many images the generator makes from one latent (N for igan_v2/vn, whose output is
  (N, B, H, W, C), one image per class; else 1). Traced, not compiled."""
  import jax
  import jax.numpy as jnp
  from igan_jax import train
  z = jax.ShapeDtypeStruct((1, state.hp.z_dim), jnp.float32)
  shape = jax.eval_shape(lambda s, z: train.generate(s, z), state, z).shape
  return int(shape[0]) if len(shape) == 5 else 1


def flatten_classes(x):
  """(K, B, H, W, C) → (B·K, H, W, C), latent-major (image i is class i % K of latent i // K),
  so the first n images of a batch hold every class equally (± 1); 4-D input is returned as is."""
  if x.ndim != 5:
    return x
  return x.swapaxes(0, 1).reshape((-1,) + tuple(x.shape[2:]))


def latent_batches(n: int, k: int, batch_size: int) -> tuple[int, int]:
  """(latents, latents per batch) for n images when one latent gives k: ceil(n / k) latents,
  batches of max(1, batch_size // k) latents, i.e. at most batch_size images per batch."""
  m = -(-n // k)
  return m, min(m, max(1, batch_size // k))


def generate_images(state, seed: int, n: int, batch_size: int, use_ema: bool = False):
  """n uint8 images from the evaluation latents of `seed`, in fixed-size batches (one compile).

  Class-stacked generators (K images per latent): ceil(n / K) latents, their K images each in
  latent-major order (`flatten_classes`), the first n kept.
  """
  import jax
  from igan_jax import train

  k = images_per_latent(state)
  m, bs = latent_batches(n, k, batch_size)
  z = np.asarray(eval_latents(seed, m, state.hp.z_dim))
  out = None
  for start in range(0, m, bs):
    chunk = z[start:start + bs]
    valid = chunk.shape[0]
    if valid < bs:
      chunk = np.concatenate([chunk, np.zeros((bs - valid, chunk.shape[1]), chunk.dtype)])
    x = flatten_classes(quantise(jax.device_get(train.generate(state, chunk,
                                                               use_ema=use_ema))))
    x = x[:min(valid * k, n - start * k)]
    if out is None:
      out = np.empty((n,) + x.shape[1:], np.uint8)
    out[start * k:start * k + len(x)] = x
  return out


# ---------------------------------------------------------------------------------------------
# The evaluation


def parse_checkpoint(step) -> int | str | None:
  """--checkpoint: None (the latest), a step number (int or digits) or "best"."""
  from igan_jax import checkpoint as ckpt_lib
  if step is None or (isinstance(step, (int, np.integer)) and not isinstance(step, bool)):
    return None if step is None else int(step)
  text = str(step).strip()
  if text == "best":
    return "best"
  if text.isdigit():
    return int(text)
  raise ckpt_lib.CheckpointError(f"--checkpoint must be a step number or 'best', got {step!r}")


def _restore(config, workdir: str, step: int | str | None):
  from igan_jax import checkpoint as ckpt_lib
  from igan_jax import train

  if not os.path.isdir(workdir):
    raise train.WorkdirError(f"--workdir {workdir} does not exist; pass the workdir of a "
                             "trained run")
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if step == "best":
    return _restore_best(config, workdir)
  # Checked before Checkpointer(), which would create the directory (and log): orbax names a
  # complete checkpoint by its bare step number; its temporary directories carry a suffix.
  steps = sorted(int(e) for e in os.listdir(ckpt_dir) if e.isdigit()) \
      if os.path.isdir(ckpt_dir) else []
  if not steps:
    raise ckpt_lib.CheckpointError(
        f"no checkpoint in {ckpt_dir}; train first with --mode=train --workdir={workdir}")
  if step is not None and step not in steps:
    raise ckpt_lib.CheckpointError(
        f"no checkpoint {step} in {ckpt_dir}; available: {', '.join(map(str, steps))}")
  saved = ckpt_lib.load_saved_config(workdir)
  if saved is not None:
    ckpt_lib.check_compatible(saved, config.to_dict(), workdir)
  return _restore_read_only(ckpt_dir, train.create_train_state(config), step or steps[-1])


def _restore_best(config, workdir: str):
  """The state in <workdir>/checkpoints/best/ (checkpoint.BestCheckpointer), read-only."""
  from igan_jax import checkpoint as ckpt_lib
  from igan_jax import train

  best_dir = ckpt_lib.best_directory(workdir)
  if not os.path.isdir(best_dir) or not any(e.isdigit() for e in os.listdir(best_dir)):
    raise ckpt_lib.CheckpointError(
        f"no best checkpoint in {best_dir}; training keeps one when FID during training is on "
        f"(--config.eval_every > 0); or evaluate a step with --checkpoint=<step>")
  saved = ckpt_lib.load_saved_config(workdir)
  if saved is not None:
    ckpt_lib.check_compatible(saved, config.to_dict(), workdir)
  best = ckpt_lib.BestCheckpointer(best_dir, read_only=True)
  try:
    record = best.record()
    state = best.restore(train.create_train_state(config))
  finally:
    best.close()
  return state, record


def _restore_read_only(ckpt_dir: str, target, step: int):
  """`checkpoint.Checkpointer.restore`, but through a read-only orbax manager.

  Why not Checkpointer itself: it opens its manager with create=True and
  cleanup_tmp_directories=True, so evaluating a workdir while its run is still training would
  delete the temporary directory of a save in flight. A read-only manager writes nothing.
  """
  import jax
  import orbax.checkpoint as ocp
  from igan_jax import checkpoint as ckpt_lib
  from igan_jax.state import from_checkpoint, to_checkpoint

  from absl import logging as absl_logging

  # Opening read-only, orbax warns that the directory is read-only: that is the point here, and
  # such a line would break the CLI's one-line error contract; only the constructor is quieted.
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    manager = ocp.CheckpointManager(ckpt_dir, options=ocp.CheckpointManagerOptions(
        read_only=True, create=False, save_interval_steps=0))
  finally:
    absl_logging.set_verbosity(verbosity)
  try:
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, to_checkpoint(target))
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except Exception as e:  # orbax raises many types for a damaged or foreign checkpoint
    raise ckpt_lib.CheckpointError(
        f"checkpoint {step} in {ckpt_dir} cannot be read ({type(e).__name__}: "
        f"{str(e).splitlines()[0][:200] if str(e) else ''}); evaluate another --checkpoint, or "
        "pass the --config this run was trained with") from e
  finally:
    manager.close()
  return from_checkpoint(target, restored)


def record_path(workdir: str, step) -> str:
  """Where the record of an evaluation of checkpoint `step` goes: `<workdir>/eval/<step>.json`,
  or `<step>.1.json`, `<step>.2.json`, ... when that exists — an evaluation never overwrites an
  earlier one (say, a classifier-only one by an Inception one of the same step). Creates
  `<workdir>/eval`."""
  eval_dir = os.path.join(workdir, "eval")
  os.makedirs(eval_dir, exist_ok=True)
  path, k = os.path.join(eval_dir, f"{step}.json"), 0
  while os.path.exists(path):
    k += 1
    path = os.path.join(eval_dir, f"{step}.{k}.json")
  return path


def evaluate_workdir(config, workdir: str, step: int | None = None, num_samples: int | None = None,
                     seeds: int | Sequence[int] | None = None,
                     backbones: Sequence[str] | None = None,
                     inception_samples: int | None = None, *, cache_dir: str | None = None,
                     write: bool = True, verbose: bool = True, **more) -> dict:
  """Evaluates checkpoint `step` of the run in `workdir`; returns the record that is also
  written to `<workdir>/eval/<step>.json` (`<step>.<k>.json` when that exists: record_path).

  step: None (the latest in <workdir>/checkpoints), a step number, or "best": the state kept in
  <workdir>/checkpoints/best/ by FID during training (checkpoint.BestCheckpointer); its record
  (training step, metric, value) goes into the protocol as "best_checkpoint", and the file is
  `<workdir>/eval/<training step>.json` like any checkpoint's (the state is the one training
  had at that step).
  igan_v2/vn (class-stacked): ceil(N / K) latents give N images, K classes each; the real sets
  are class-balanced over the model's classes (`select_real`).

  num_samples (default 10,000), seeds (default 3: seeds 0, 1, 2; or a list), backbones (default
  ("classifier", "inception")) and inception_samples (default 0 = num_samples) fall back to
  config.eval and then to DEFAULTS when None; `more` takes the other DEFAULTS keys
  (batch_size, inception_batch_size, use_ema, kid_subsets, kid_subset_size, pr_k, dc_k).
  A backbone that cannot run here (no classifier weights for the dataset, Inception weights not
  fetchable, colour images for the grayscale classifier) is skipped with a printed message and
  listed under "skipped" in the record, never silently.
  Raises WorkdirError / CheckpointError / ConfigError / DatasetError / EvaluationError with one
  actionable message.
  """
  from igan_jax import data as data_lib
  from igan_jax import train

  t_start = time.perf_counter()
  s = settings(config, num_samples=num_samples, seeds=seeds, backbones=backbones,
               inception_samples=inception_samples, **more)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  dataset, resolution = config.data.name, config.data.resolution
  data_dir = config.data.get("data_dir", "") or None
  checkpoint = parse_checkpoint(step)
  state = _restore(config, workdir, checkpoint)
  best_record = None
  if checkpoint == "best":
    state, best_record = state
  step = int(state.step)
  classes = model_classes(config)
  if s["use_ema"] and state.g_ema is None:
    from igan_jax.config import ConfigError
    raise ConfigError("config.eval.use_ema: this run has no EMA generator (config.ema_decay "
                      "is 0); set use_ema=False")

  # Backbones that can run here; the others are skipped, visibly.
  active, skipped = [], {}
  for name in s["backbones"]:
    try:
      if name == "classifier":
        if train.image_shape(config)[2] != 1:
          raise EvaluationError("the classifier backbone is for 28×28 grayscale sets; "
                                f"{dataset} has colour images")
        active.append(_classifier_backbone(dataset, resolution, s))
      else:
        active.append(_inception_backbone(resolution, s))
    except EvaluationError as e:
      skipped[name] = str(e)
      print(f"[igan_jax] evaluate: WARNING: skipping backbone {name}: {e}", flush=True)
  if not active:
    raise EvaluationError(f"no backbone can run ({'; '.join(skipped.values())})")

  real_x, real_y = data_lib.load_images(dataset, REAL_SPLIT, data_dir, resolution)
  floor_x, floor_y = data_lib.load_images(dataset, FLOOR_SPLIT, data_dir, resolution)
  n_max = max(samples_for(b.name, s) for b in active)
  gen_protocol = dict(generator="g_ema" if s["use_ema"] else "g", step=step,
                      latents=f"jax.random.normal(fold_in(PRNGKey({EVAL_KEY:#x}), seed), "
                              f"(N, {state.hp.z_dim})), independent of config.seed",
                      quantisation="uint8, clip(round((x + 1) * 127.5), 0, 255)",
                      mode="inference (running batch-norm statistics, no dropout)")
  if classes is not None:
    gen_protocol.update(classes=list(classes), images=(
        f"ceil(N / {len(classes)}) latents x {len(classes)} classes, latent-major, first N"))
  if best_record is not None:
    gen_protocol["best_checkpoint"] = best_record
  record: dict[str, Any] = dict(
      step=step, workdir=workdir,
      time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      protocol=dict(dataset=dataset, resolution=resolution, real_split=REAL_SPLIT,
                    floor_split=FLOOR_SPLIT, seeds=s["seeds"], **gen_protocol,
                    kid=dict(kernel="(x.y/d + 1)^3", subsets=s["kid_subsets"],
                             subset_size=s["kid_subset_size"], subset_seed=0),
                    precision_recall_k=s["pr_k"], density_coverage_k=s["dc_k"],
                    ball_membership="<= (Kynkaanniemi et al.)",
                    statistics="float64, covariance with N-1 divisor"),
      backbones={}, skipped=skipped)

  # Real references first: they are cached, and a data error should come before generating.
  refs = {}
  for b in active:
    n = samples_for(b.name, s)
    idx, how = select_real(real_y, n, classes)
    fidx, fhow = select_real(floor_y, n, classes)
    tag = classes_tag(classes)
    real_feats, real_logits, real_stats, real_info = reference_features(
        b, dataset, REAL_SPLIT, resolution, real_x[idx], cache_dir, tag)
    floor_feats, _, _, floor_info = reference_features(b, dataset, FLOOR_SPLIT, resolution,
                                                       floor_x[fidx], cache_dir, tag)
    refs[b.name] = dict(feats=real_feats, stats=real_stats, labels=real_y[idx],
                        split_labels=real_y if classes is None else
                        real_y[np.isin(real_y, classes)],
                        logits=real_logits, floor=floor_feats, n=n,
                        info=dict(real=dict(real_info, subset=how),
                                  floor=dict(floor_info, subset=fhow)))

  per_seed = {b.name: [] for b in active}
  class_rows, seconds = [], {b.name: 0.0 for b in active}
  seconds["generate"] = 0.0
  for seed in s["seeds"]:
    t0 = time.perf_counter()
    images = generate_images(state, seed, n_max, s["batch_size"], s["use_ema"])
    seconds["generate"] += time.perf_counter() - t0
    if verbose:
      _log(f"seed {seed}: generated {n_max} images ({time.perf_counter() - t0:.1f} s)")
    for b in active:
      t0 = time.perf_counter()
      ref = refs[b.name]
      fake, logits = b.extract(images[:ref["n"]])
      row = feature_metrics(ref["feats"], ref["stats"], np.asarray(fake, np.float32), s)
      per_seed[b.name].append(dict(seed=seed, **row))
      if b.has_logits:
        class_rows.append(dict(seed=seed, **class_metrics(logits, ref["split_labels"],
                                                           ref["logits"].shape[1])))
      seconds[b.name] += time.perf_counter() - t0
      if verbose:
        _log(f"seed {seed}: {b.name} N={ref['n']} FID {row['fid']:.3f} "
             f"({time.perf_counter() - t0:.1f} s)")

  for b in active:
    ref = refs[b.name]
    t0 = time.perf_counter()
    floor = feature_metrics(ref["feats"], ref["stats"], ref["floor"], s)
    seconds[b.name] += time.perf_counter() - t0
    mean, sd = _mean_sd(per_seed[b.name], METRICS)
    record["backbones"][b.name] = dict(
        protocol=dict(b.protocol, n=ref["n"], real_split=REAL_SPLIT,
                      real_subset=ref["info"]["real"]["subset"],
                      floor=f"{FLOOR_SPLIT} vs {REAL_SPLIT}, N={ref['n']} each",
                      floor_subset=ref["info"]["floor"]["subset"]),
        mean=mean, sd=sd, floor=floor, per_seed=per_seed[b.name],
        reference={k: dict(path=v["path"], cache=v["cache"]) for k, v in ref["info"].items()},
        seconds=round(seconds[b.name], 1))
    if b.has_logits:
      from igan_jax.evaluation import classifier as clf
      keys = ("entropy", "kl_to_real", "classes_ge_1pct", "mean_confidence", "share")
      cmean, csd = _mean_sd(class_rows, keys)
      nc = ref["logits"].shape[1]
      real_pred = class_metrics(ref["logits"], ref["split_labels"], nc)
      real_pred["accuracy"] = float(np.mean(np.argmax(ref["logits"], 1) == ref["labels"]))
      record["class_metrics"] = dict(
          backbone="classifier", n=ref["n"], num_classes=nc,
          class_names=list(clf.CLASS_NAMES.get(dataset, [str(i) for i in range(nc)])),
          entropy_max=math.log(nc),
          kl=f"KL(predicted classes || labels of the whole {REAL_SPLIT} split"
             f"{'' if classes is None else f' within classes {list(classes)}'}), nats",
          real_label_share=(np.bincount(ref["split_labels"], minlength=nc)
                            / len(ref["split_labels"])).tolist(),
          mean=cmean, sd=csd, per_seed=class_rows, real_predicted=real_pred)
  record["seconds"] = dict({k: round(v, 1) for k, v in seconds.items()},
                           total=round(time.perf_counter() - t_start, 1))
  if write:
    path = record_path(workdir, step)
    with open(path + ".tmp", "w") as f:
      json.dump(record, f, indent=2)
      f.write("\n")
    os.replace(path + ".tmp", path)
    record["path"] = path
  if verbose:
    print(format_table(record), flush=True)
  return record


# ---------------------------------------------------------------------------------------------
# FID during training


TRAIN_SEED = 0  # the training FID's latents are the evaluation's seed 0 (see TrainingEvaluator)
TRAIN_DEFAULTS = dict(train_num_samples=2_000, train_backbone="auto")


def train_backbone(config) -> str:
  """The backbone of FID during training: config.eval.train_backbone, where "auto" is the
  classifier for 28×28 grayscale mnist/fashion_mnist whose classifier weights are shipped (fast,
  and a feature space made for those images), else Inception."""
  from igan_jax import train
  from igan_jax.config import ConfigError
  from igan_jax.evaluation import classifier as clf

  ev = config.get("eval", None) or {}
  choice = ev.get("train_backbone", TRAIN_DEFAULTS["train_backbone"])
  dataset = config.data.name
  fits_classifier = (dataset in ("mnist", "fashion_mnist")
                     and train.image_shape(config) == (28, 28, 1) and clf.available(dataset))
  if choice == "auto":
    return "classifier" if fits_classifier else "inception"
  if choice == "classifier" and not fits_classifier:
    raise ConfigError(
        f"config.eval.train_backbone: the classifier backbone needs 28×28 grayscale mnist or "
        f"fashion_mnist with shipped classifier weights; {dataset} at "
        f"{config.data.resolution} does not fit: use inception or auto")
  if choice not in BACKBONES:
    raise ConfigError(f"config.eval.train_backbone: must be auto, classifier or inception, got "
                      f"{choice!r}")
  return choice


def real_images(config, split: str, n: int, classes: Sequence[int] | None = None):
  """n real images of `split` for a reference set: (uint8 images, labels, how, cache tag).

  A split that fits in config.data.max_resident_mb is loaded and subset with `select_real`, as
  evaluate_workdir does (so the two share cached references); a larger one (LSUN, CelebA's train
  split) is sampled with `data.sample_images` without loading it, class by class for
  class-stacked models.
  """
  from igan_jax import data as data_lib

  name, res = config.data.name, config.data.resolution
  data_dir = config.data.get("data_dir", "") or None
  manual_dir = config.data.get("manual_dir", "") or None
  limit = int(config.data.get("max_resident_mb", 4096)) * 2**20
  try:
    large = data_lib.dataset_bytes(name, res, split=split, data_dir=data_dir) > limit
  except data_lib.DatasetError:
    large = False  # load_images below says what is wrong
  tag = classes_tag(classes)
  if not large:
    x, y = data_lib.load_images(name, split, data_dir, res, manual_dir=manual_dir)
    idx, how = select_real(y, n, classes)
    return x[idx], y[idx], how, tag
  common = dict(split=split, seed=REAL_SUBSET_SEED, data_dir=data_dir, resolution=res,
                manual_dir=manual_dir)
  if classes is None:
    x, y = data_lib.sample_images(name, n, **common)
  else:
    k = len(classes)
    parts = [data_lib.sample_images(name, n // k + (j < n % k), label=c, **common)
             for j, c in enumerate(classes)]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
  how = (f"igan_jax.data.sample_images(seed={REAL_SUBSET_SEED})"
         f"{'' if classes is None else f', {n} balanced over labels {list(classes)}'}")
  return x, y, how, "sampled" + (f"-{tag}" if tag else "")


def _fused_program(backbone: str):
  """generator → (class axis flattened) → backbone, one jitted program: (state, generator
  params, backbone variables, z (B, z_dim)) → (features (B·K, D), logits or None).

  The generator params are an argument, not part of the state, so the raw and the EMA generator
  share one compiled program. The backbones quantise float images exactly as `quantise` does
  before they see them, so these features equal those of `generate_images` + `_Backbone`.
  """
  if backbone not in _FUSED:
    _FUSED[backbone] = _make_fused(backbone)
  return _FUSED[backbone]


_FUSED: dict = {}  # backbone name → its jitted program (jit caches compiles per state shape)


def _make_fused(backbone: str):
  from igan_jax import train
  from igan_jax.compile_options import jit

  def run(state, g_params, variables, z):
    raw = state.replace(g=state.g.replace(params=g_params))
    x = flatten_classes(train.generate(raw, z))
    if backbone == "classifier":
      from igan_jax.evaluation import classifier as clf
      net = clf.SmallCNN(num_classes=variables["fc2"]["bias"].shape[0])
      return net.apply({"params": variables}, clf.to_input(x))
    from igan_jax.evaluation import inception
    return inception.FIDInceptionV3().apply(variables, inception.preprocess(x)), None

  return jit(run)


class TrainingEvaluator:
  """FID during training: `TrainingEvaluator(config)` once per run, `evaluator(state)` at each
  evaluation → flat floats for metrics.jsonl.

  What a call returns ("<b>" = the backbone, `train_backbone(config)`):
    fid_<b>:              FID of the raw generator (this is `key`, the metric the best
                          checkpoint is chosen by; lower is better);
    fid_<b>_ema:          the same for the EMA generator, when state.g_ema is not None;
    fid_<b>_floor:        real-vs-real floor at the same N (train vs test split), when the
                          dataset has a test split: a constant, logged beside the FID;
    class_entropy[_ema], classes_ge_1pct[_ema]:  with the classifier, the class histogram of
                          the generated images (nats; classes with ≥ 1% share) — mode collapse;
    class_match[_ema]:    igan_v2/vn with the classifier: the fraction of class-k images that
                          the classifier puts in class k (data.classes[k]);
    eval_seconds:         the wall time of the call.

  Protocol: N = config.eval.train_num_samples generated vs N real images of the test split
  (the training split when there is no test split, and then no floor), the same backbone,
  quantisation and cached reference statistics as evaluate_workdir; latents are the
  evaluation's seed TRAIN_SEED = 0 (fold_in(PRNGKey(0xE7A1), 0)): the same at every call and
  independent of the run's rng, so values are comparable over training, and
  `evaluate_workdir(config, workdir, step, num_samples=N, seeds=[0], backbones=(<b>,))`
  reproduces a logged value (up to float rounding of a different batch size). FID at N = 2,000
  is biased upwards against FID at 10,000: compare it only with itself.

  Cost: built on the first call (or `build(state)`): backbone weights, the real reference and
  floor features (cached on disk per protocol, so a resumed run reads them), one compile of the
  fused generator → backbone program. Then per call N images through one jitted program per
  backbone (twice with EMA). Inception on 2 CPU cores runs ~6.5 images/s: N = 2,000 is ~5 min
  per call (twice that with EMA, plus ~10 min once for the reference and floor); the classifier
  takes seconds.
  """

  def __init__(self, config, *, cache_dir: str | None = None, verbose: bool = True):
    from igan_jax.config import ConfigError

    self.config = config
    self.settings = settings(config)
    ev = config.get("eval", None) or {}
    n = ev.get("train_num_samples", TRAIN_DEFAULTS["train_num_samples"])
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 10:
      raise ConfigError(f"config.eval.train_num_samples: must be an integer ≥ 10, got {n!r}")
    self.num_samples = int(n)
    self.backbone = train_backbone(config)
    self.key = f"fid_{self.backbone}"
    self.classes = model_classes(config)
    self.cache_dir, self.verbose = cache_dir, verbose
    if self.backbone == "classifier":
      from igan_jax.evaluation import classifier as clf
      weights = clf.load_info(config.data.name)["sha256"]
    else:
      from igan_jax.evaluation import inception
      weights = inception.WEIGHTS_SHA1
    # What makes two values comparable (checkpoint.BestCheckpointer refuses to compare across).
    self.protocol = dict(metric=self.key, backbone=self.backbone, weights=weights,
                         n=self.num_samples, dataset=config.data.name,
                         resolution=config.data.resolution, latents=f"evaluate seed {TRAIN_SEED}",
                         classes=None if self.classes is None else list(self.classes))
    self.split = None    # the real split used, once built
    self.floor = None    # the real-vs-real FID at N, once built (None without a test split)
    self.protocol_detail = None  # protocol + split, real subset, reference file, once built
    self._ready = False

  def build(self, state):
    """Loads the backbone and the real reference (cached), and makes the fixed latents; the
    first call does this itself."""
    import jax
    from igan_jax import data as data_lib
    from igan_jax.evaluation import frechet_distance

    t0 = time.perf_counter()
    cfg, s, n = self.config, self.settings, self.num_samples
    dataset, res = cfg.data.name, cfg.data.resolution
    if self.backbone == "classifier":
      b = _classifier_backbone(dataset, res, s)
      self._batch = s["batch_size"]
    else:
      b = _inception_backbone(res, s)
      self._batch = s["inception_batch_size"]
    try:
      split = REAL_SPLIT
      x, y, how, tag = real_images(cfg, split, n, self.classes)
    except (data_lib.DatasetError, EvaluationError) as e:
      split = cfg.data.get("split", "train")
      if split == REAL_SPLIT:
        raise
      _log(f"FID during training: no usable {REAL_SPLIT} split ({str(e).splitlines()[0]}); "
           f"using the {split} split, without a floor")
      x, y, how, tag = real_images(cfg, split, n, self.classes)
    _, _, stats, info = reference_features(b, dataset, split, res, x, self.cache_dir, tag)
    self._mu, self._sigma = stats.mean(), stats.cov()
    self._labels = y
    self.split = split
    self.protocol_detail = dict(self.protocol, split=split, real_subset=how,
                                reference=info["path"], backbone_protocol=b.protocol)
    if split == REAL_SPLIT:
      try:
        fx, _, _, ftag = real_images(cfg, FLOOR_SPLIT, n, self.classes)
        _, _, fstats, _ = reference_features(b, dataset, FLOOR_SPLIT, res, fx, self.cache_dir,
                                             ftag)
        self.floor = frechet_distance(self._mu, self._sigma, fstats.mean(), fstats.cov())
      except (data_lib.DatasetError, EvaluationError) as e:
        _log(f"FID during training: no floor ({str(e).splitlines()[0]})")
    self._k = images_per_latent(state)
    self._m, self._bs = latent_batches(n, self._k, self._batch)
    z = np.asarray(eval_latents(TRAIN_SEED, self._m, state.hp.z_dim))
    pad = -self._m % self._bs
    self._z = jax.device_put(np.concatenate([z, np.zeros((pad, z.shape[1]), z.dtype)]))
    self._variables = jax.device_put(b.variables)
    self._program = _fused_program(self.backbone)
    self._ready = True
    if self.verbose:
      floor = "" if self.floor is None else f", floor {self.floor:.3f}"
      _log(f"FID during training: {self.backbone}, N={n} vs the {split} split{floor} "
           f"({time.perf_counter() - t0:.1f} s to set up)")

  def features(self, state, g_params) -> tuple[np.ndarray, np.ndarray | None]:
    """Backbone features (N, D) (and logits) of the N fixed-latent images of `g_params`."""
    import jax

    if not self._ready:
      self.build(state)
    outs = [self._program(state, g_params, self._variables, self._z[i:i + self._bs])
            for i in range(0, self._m, self._bs)]  # all dispatched before the first wait
    outs = jax.device_get(outs)
    keep = lambda a, i: a[:min(self._bs, self._m - i) * self._k]  # noqa: E731
    feats = np.concatenate([keep(f, i * self._bs) for i, (f, _) in enumerate(outs)])
    logits = None if outs[0][1] is None else np.concatenate(
        [keep(l, i * self._bs) for i, (_, l) in enumerate(outs)])
    n = self.num_samples
    return feats[:n].astype(np.float32), None if logits is None else logits[:n]

  def __call__(self, state) -> dict:
    from igan_jax.evaluation import FeatureStats, frechet_distance

    t0 = time.perf_counter()
    if not self._ready:
      self.build(state)
    out = {}
    generators = [("", state.g.params)]
    if state.g_ema is not None:
      generators.append(("_ema", state.g_ema))
    for suffix, params in generators:
      feats, logits = self.features(state, params)
      stats = FeatureStats(feats.shape[1])
      stats.update(feats)
      out[self.key + suffix] = frechet_distance(self._mu, self._sigma, stats.mean(),
                                                stats.cov())
      if logits is not None:
        c = class_metrics(logits, self._labels, logits.shape[1])
        out["class_entropy" + suffix] = c["entropy"]
        out["classes_ge_1pct" + suffix] = float(c["classes_ge_1pct"])
        if self.classes is not None and self._k > 1:
          expected = np.asarray(self.classes)[np.arange(len(logits)) % self._k]
          out["class_match" + suffix] = float(np.mean(np.argmax(logits, 1) == expected))
    if self.floor is not None:
      out[self.key + "_floor"] = float(self.floor)
    out["eval_seconds"] = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------------------------------------
# The table


def _pm(mean, sd, fmt="{:.3f}", scale=1.0):
  if mean is None:
    return "—"
  text = fmt.format(mean * scale)
  return text if sd is None else f"{text} ± {fmt.format(sd * scale)}"


def format_table(record: dict) -> str:
  """A readable summary of a record from `evaluate_workdir`."""
  p = record["protocol"]
  lines = [f"{p['dataset']} {p['resolution']}x{p['resolution']}, step {record['step']}, "
           f"generator {p['generator']}, seeds {p['seeds']} (mean ± sd over seeds); real = "
           f"{p['real_split']} split, floor = {p['floor_split']} vs {p['real_split']} at the same N"]
  head = (f"{'backbone':<11}{'N':>6}  {'FID':<17}{'floor':>8}  {'KID x1e3':<15}{'floor':>7}  "
          f"{'precision':<15}{'recall':<15}{'density':<15}{'coverage':<15}")
  lines += [head, "-" * len(head)]
  for name, b in record["backbones"].items():
    m, sd, fl = b["mean"], b["sd"], b["floor"]
    lines.append(
        f"{name:<11}{b['protocol']['n']:>6}  {_pm(m['fid'], sd['fid'], '{:.2f}'):<17}"
        f"{fl['fid']:>8.2f}  {_pm(m['kid'], sd['kid'], '{:.2f}', 1e3):<15}"
        f"{fl['kid'] * 1e3:>7.2f}  {_pm(m['precision'], sd['precision']):<15}"
        f"{_pm(m['recall'], sd['recall']):<15}{_pm(m['density'], sd['density']):<15}"
        f"{_pm(m['coverage'], sd['coverage']):<15}")
    lines.append(f"{'  floor':<17}{'':<17}{'':>8}  {'':<15}{'':>7}  {fl['precision']:<15.3f}"
                 f"{fl['recall']:<15.3f}{fl['density']:<15.3f}{fl['coverage']:<15.3f}")
  for name, why in record.get("skipped", {}).items():
    lines.append(f"{name:<11}SKIPPED: {why}")
  c = record.get("class_metrics")
  if c:
    m, sd, r = c["mean"], c["sd"], c["real_predicted"]
    lines.append(f"classes (classifier, N={c['n']}, mean share over seeds; real test images "
                 f"predicted: accuracy {r['accuracy']:.3f}):")
    lines.append("  " + ", ".join(f"{n} {100 * v:.1f}%" for n, v in zip(c["class_names"],
                                                                       m["share"])))
    lines.append(f"  entropy {_pm(m['entropy'], sd['entropy'])} nats (max "
                 f"{c['entropy_max']:.3f}; real {r['entropy']:.3f}), KL(gen‖real labels) "
                 f"{_pm(m['kl_to_real'], sd['kl_to_real'], '{:.4f}')} (real "
                 f"{r['kl_to_real']:.4f}), classes ≥1%: {_pm(m['classes_ge_1pct'], sd['classes_ge_1pct'], '{:.1f}')}"
                 f"/{c['num_classes']}, mean confidence "
                 f"{_pm(m['mean_confidence'], sd['mean_confidence'])} (real "
                 f"{r['mean_confidence']:.3f})")
  if "path" in record:
    lines.append(f"written to {record['path']}")
  return "\n".join(lines)
