"""Evaluation: metrics on features, the two backbones, and the evaluation of runs.

Modules (none imports training, docs/design.md §2):
  fid.py               Fréchet distance / FID (float64 numpy, like the next three)
  kernel_distance.py   KID
  manifold_metrics.py  precision/recall, density/coverage
  feature_arrays.py    the metrics' input checks and row blocks
  inception.py         the FID Inception-V3 backbone in Flax; its weights:
  inception_weights.py the standard weights fetched and verified (SHA-1), the cache directory
  torch_zip.py         torch zip archives read with numpy only
  inception_convert.py torch tensors → Flax variables by name, the .npz cache, load_variables
  classifier.py        the 28×28 classifier backbone (shipped weights in weights/)
  settings.py          config.eval: defaults, and the one place the settings are checked
  backbones.py         a backbone by name, with the protocol a record states about it
  reference.py         the real sets (which split, which images, the floor's second set) and
                       their cached features
  metrics.py           the metrics of one set of generated features; class histograms
  sampling.py          the evaluation's latents, uint8 quantisation, images from a generate function
  workdir.py           `--mode=evaluate`: evaluate_workdir (restore, generate, measure, write)
  during_training.py   FID during training: TrainingEvaluator, and for_config (main.py's builder)
  table.py             a record as a readable table

Importing the package loads the numpy metrics only; the names of inception.py and
classifier.py below load JAX and Flax on first use (PEP 562), and the other modules are
imported by name (`from igan_jax.evaluation import workdir`).
"""
import importlib

from .fid import FeatureStats, feature_statistics, fid_from_features, frechet_distance
from .kernel_distance import kid
from .manifold_metrics import density_coverage, precision_recall

# name → the module that defines it, imported on first use.
_LAZY = {
  "WEIGHTS_SHA1": "inception",
  "FIDInceptionV3": "inception",
  "features": "inception",
  "image_features": "inception",
  "load_params": "inception",
  "preprocess": "inception",
  "WeightsError": "inception_weights",
  "classifier_features": "classifier",
  "classifier_logits": "classifier",
  "load_classifier": "classifier",
}

__all__ = [
  "FeatureStats",
  "feature_statistics",
  "frechet_distance",
  "fid_from_features",
  "kid",
  "precision_recall",
  "density_coverage",
] + list(_LAZY)


def __getattr__(name):
  if name in _LAZY:
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
