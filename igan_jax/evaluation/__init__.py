"""Evaluation metrics for generated samples (backbone-agnostic, float64 numpy)."""

from .fid import (
  FeatureStats,
  density_coverage,
  feature_statistics,
  fid_from_features,
  frechet_distance,
  kid,
  precision_recall,
)

__all__ = [
  "FeatureStats",
  "feature_statistics",
  "frechet_distance",
  "fid_from_features",
  "kid",
  "precision_recall",
  "density_coverage",
]
