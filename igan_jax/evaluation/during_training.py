"""FID during training: `TrainingEvaluator`, and `for_config`, the builder main.py hands to
`train.train_and_evaluate`.

N = config.eval.train_num_samples images of fixed latents (the evaluation's seed 0) through one
jitted generator → backbone program, against the real reference of `--mode=evaluate`
(reference.RealSets, cached on disk). The generator comes in as a function (default
`inference.generate_split`, the images left split over the mesh): this module imports no
training code.

Over the training state's `data` mesh (state.mesh, igan_jax/parallel.py) each batch of latents,
and the images it makes, is split along the batch axis: N devices each generate and featurise
B / N of a batch of B latents (B rounded up to a multiple of N; the last batch padded with zero
latents to that whole batch, one compiled shape, the padding dropped). The backbone's weights
are replicated over the mesh once, when the evaluator is built.
"""
from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np

from igan_jax import data as data_lib
from igan_jax import parallel
from igan_jax.compile_options import jit
from igan_jax.evaluation import classifier as clf
from igan_jax.evaluation import inception
from igan_jax.evaluation.backbones import classifier_backbone, inception_backbone
from igan_jax.evaluation.fid import frechet_distance
from igan_jax.evaluation.metrics import class_metrics, fid_against
from igan_jax.evaluation.reference import RealSets, log, reference_features
from igan_jax.evaluation.sampling import (eval_latents, flatten_classes, images_per_latent,
                                          latent_batches)
from igan_jax.evaluation.settings import EvaluationError, SettingsError, settings
from igan_jax.inference import generate_split
from igan_jax.input_pipeline import model_classes
from igan_jax.state import image_shape

TRAIN_SEED = 0  # the training FID's latents are the evaluation's seed 0 (see TrainingEvaluator)


def train_backbone(config) -> str:
  """The backbone of FID during training: config.eval.train_backbone, where "auto" is the
  classifier for 28×28 grayscale mnist/fashion_mnist whose classifier weights are shipped (fast,
  and a feature space made for those images), else Inception."""
  choice = settings(config)["train_backbone"]
  dataset = config.data.name
  fits_classifier = (dataset in ("mnist", "fashion_mnist")
                     and image_shape(config) == (28, 28, 1) and clf.available(dataset))
  if choice == "auto":
    return "classifier" if fits_classifier else "inception"
  if choice == "classifier" and not fits_classifier:
    raise SettingsError(
        f"config.eval.train_backbone: the classifier backbone needs 28×28 grayscale mnist or "
        f"fashion_mnist with shipped classifier weights; {dataset} at "
        f"{config.data.resolution} does not fit: use inception or auto")
  return choice


_PROGRAMS: dict = {}  # (backbone, generate) → its jitted program (jit caches per state shape)


def fused_program(backbone: str, generate: Callable = generate_split):
  """generator → (class axis flattened) → backbone, one jitted program: (state, generator
  params, backbone variables, z (B, z_dim)) → (features (B·K, D), logits or None).

  The generator params are an argument, not part of the state, so the raw and the EMA generator
  share one compiled program. Over the state's mesh the images stay split along the batch axis
  as the latents were (each device featurises the images it generated). The backbones quantise
  float images exactly as `sampling.quantise` does before they see them, so these features
  equal those of `sampling.generate_images` + the backbone's `extract`.
  """
  key = (backbone, generate)
  if key not in _PROGRAMS:

    def run(state, g_params, variables, z):
      x = flatten_classes(generate(state.replace(g=state.g.replace(params=g_params)), z))
      x = parallel.shard_batch(x, state.mesh, 0)
      if backbone == "classifier":
        net = clf.SmallCNN(num_classes=variables["fc2"]["bias"].shape[0])
        return net.apply({"params": variables}, clf.to_input(x))
      return inception.FIDInceptionV3().apply(variables, inception.preprocess(x)), None

    _PROGRAMS[key] = jit(run)
  return _PROGRAMS[key]


class TrainingEvaluator:
  """FID during training: one per run; `evaluator(state)` at each evaluation → flat floats for
  metrics.jsonl.

  What a call returns ("<b>" = the backbone, `train_backbone(config)`):
    fid_<b>:              FID of the raw generator (this is `key`, the metric the best
                          checkpoint is chosen by; lower is better);
    fid_<b>_ema:          the same for the EMA generator, when state.g_ema is not None;
    fid_<b>_floor:        the real-vs-real floor at the same N (reference.RealSets: train vs
                          test split, or two disjoint sets of the train split for LSUN and
                          folders): a constant, logged beside the FID;
    class_entropy[_ema], classes_ge_1pct[_ema]:  with the classifier, the class histogram of
                          the generated images (nats; classes with ≥ 1% share) — mode collapse;
    class_match[_ema]:    igan_v2/vn with the classifier: the fraction of class-k images that
                          the classifier puts in class k (data.classes[k]);
    eval_seconds:         the wall time of the call.

  Protocol: N = config.eval.train_num_samples generated vs N real images of the reference split,
  the same backbone, quantisation and cached reference statistics as `--mode=evaluate`; latents
  are the evaluation's seed TRAIN_SEED = 0 (fold_in(PRNGKey(0xE7A1), 0)): the same at every call
  and independent of the run's rng, so values are comparable over training, and
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

  def __init__(self, config, generate: Callable = generate_split, *,
               cache_dir: str | None = None, verbose: bool = True):
    self.config = config
    self.settings = settings(config)
    self.generate = generate
    self.num_samples = self.settings["train_num_samples"]
    self.backbone = train_backbone(config)
    self.key = f"fid_{self.backbone}"
    self.classes = model_classes(config)
    self.cache_dir, self.verbose = cache_dir, verbose
    if self.backbone == "classifier":
      weights = clf.load_info(config.data.name)["sha256"]
    else:
      weights = inception.WEIGHTS_SHA1
    # What makes two values comparable (checkpoint.BestCheckpointer refuses to compare across).
    self.protocol = dict(metric=self.key, backbone=self.backbone, weights=weights,
                         n=self.num_samples, dataset=config.data.name,
                         resolution=config.data.resolution, latents=f"evaluate seed {TRAIN_SEED}",
                         classes=None if self.classes is None else list(self.classes))
    self.split = None    # the real split used, once built
    self.floor = None    # the real-vs-real FID at N, once built (None when it cannot be had)
    self.protocol_detail = None  # protocol + split, real subset, reference file, once built
    self._ready = False

  def build(self, state):
    """Loads the backbone and the real reference (cached), and makes the fixed latents; the
    first call does this itself."""
    t0 = time.perf_counter()
    cfg, s, n = self.config, self.settings, self.num_samples
    dataset, res = cfg.data.name, cfg.data.resolution
    mesh = state.mesh
    if self.backbone == "classifier":
      b = classifier_backbone(dataset, res, s, mesh)
      self._batch = s["batch_size"]
    else:
      b = inception_backbone(res, s, mesh)
      self._batch = s["inception_batch_size"]
    real = RealSets(cfg, self.classes)
    ref = real.reference(n)
    _, _, stats, info = reference_features(b, dataset, ref.split, res, ref.images,
                                           self.cache_dir, ref.tag)
    self._mu, self._sigma = stats.mean(), stats.cov()
    self._labels = ref.labels
    self.split = ref.split
    self.protocol_detail = dict(self.protocol, split=ref.split, real_subset=ref.how,
                                reference=info["path"], backbone_protocol=b.protocol)
    try:
      flo = real.floor(n)
      _, _, fstats, _ = reference_features(b, dataset, flo.split, res, flo.images,
                                           self.cache_dir, flo.tag)
      self.floor = frechet_distance(self._mu, self._sigma, fstats.mean(), fstats.cov())
    except (data_lib.DatasetError, EvaluationError) as e:
      log(f"FID during training: no floor ({str(e).splitlines()[0]})")
    del real  # the splits read whole, no longer needed
    generate = lambda z: self.generate(state, z)  # noqa: E731
    self._k = images_per_latent(generate, state.hp.z_dim)
    self._m, bs = latent_batches(n, self._k, self._batch)
    self._bs = parallel.devices_multiple(bs, mesh)
    z = np.asarray(eval_latents(TRAIN_SEED, self._m, state.hp.z_dim))
    z = np.concatenate([z, np.zeros((-self._m % self._bs, z.shape[1]), z.dtype)])
    batches = [z[i:i + self._bs] for i in range(0, self._m, self._bs)]
    if mesh is None:
      self._z = [jax.device_put(zb) for zb in batches]
      self._variables = jax.device_put(b.variables)
    else:
      self._z = [parallel.put_batch(zb, mesh, 0) for zb in batches]
      self._variables = parallel.put_replicated(b.variables, mesh)
    self._program = fused_program(self.backbone, self.generate)
    self._ready = True
    if self.verbose:
      floor = "" if self.floor is None else f", floor {self.floor:.3f}"
      log(f"FID during training: {self.backbone}, N={n} vs the {ref.split} split{floor} "
          f"({time.perf_counter() - t0:.1f} s to set up)")

  def features(self, state, g_params) -> tuple[np.ndarray, np.ndarray | None]:
    """Backbone features (N, D) (and logits) of the N fixed-latent images of `g_params`."""
    if not self._ready:
      self.build(state)
    outs = [self._program(state, g_params, self._variables, zb)
            for zb in self._z]  # all dispatched before the first wait
    outs = parallel.to_host(outs)  # every process gets every feature (several processes)
    keep = lambda a, i: a[:min(self._bs, self._m - i) * self._k]  # noqa: E731
    feats = np.concatenate([keep(f, i * self._bs) for i, (f, _) in enumerate(outs)])
    logits = None if outs[0][1] is None else np.concatenate(
        [keep(l, i * self._bs) for i, (_, l) in enumerate(outs)])
    n = self.num_samples
    return feats[:n].astype(np.float32), None if logits is None else logits[:n]

  def __call__(self, state) -> dict:
    t0 = time.perf_counter()
    if not self._ready:
      self.build(state)
    out = {}
    generators = [("", state.g.params)]
    if state.g_ema is not None:
      generators.append(("_ema", state.g_ema))
    for suffix, params in generators:
      feats, logits = self.features(state, params)
      out[self.key + suffix] = fid_against(self._mu, self._sigma, feats)
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


def for_config(config, **kw) -> TrainingEvaluator | None:
  """The evaluator `train.train_and_evaluate` takes for `config`: a TrainingEvaluator when FID
  during training is on (config.eval_every > 0), else None. Its settings are checked here, so a
  bad one stops the run before anything is written."""
  if not config.get("eval_every", 0):
    return None
  return TrainingEvaluator(config, **kw)
