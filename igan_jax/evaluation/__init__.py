"""Evaluation: backbone-agnostic metrics (float64 numpy) and the FID Inception backbone."""

from .fid import (
  FeatureStats,
  density_coverage,
  feature_statistics,
  fid_from_features,
  frechet_distance,
  kid,
  precision_recall,
)

from .inception import (
  WEIGHTS_SHA1,
  FIDInceptionV3,
  features,
  image_features,
  load_params,
  preprocess,
)
from .inception_weights import WeightsError

__all__ = [
  "WEIGHTS_SHA1",
  "FIDInceptionV3",
  "features",
  "image_features",
  "load_params",
  "preprocess",
  "WeightsError",
  "FeatureStats",
  "feature_statistics",
  "frechet_distance",
  "fid_from_features",
  "kid",
  "precision_recall",
  "density_coverage",
]

# The 28×28 classifier backbone (classifier.py), imported on first use (PEP 562) so that
# `python -m igan_jax.evaluation.classifier` does not find its module already imported.
_CLASSIFIER_EXPORTS = ("classifier_features", "classifier_logits", "load_classifier")
__all__ += list(_CLASSIFIER_EXPORTS)


def __getattr__(name):
  if name in _CLASSIFIER_EXPORTS:
    from . import classifier
    return getattr(classifier, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
