"""The numbers of one evaluation: feature metrics of generated vs real, class histograms, and
their mean ± sd over latent seeds.

FID (Heusel et al. 2017; the paper's eq. 13), KID (Bińkowski et al. 2018), improved
precision/recall (k = 3; Kynkäänniemi et al. 2019) and density/coverage (k = 5; Naeem et al.
2020), all float64 on the features (fid.py, kernel_distance.py, manifold_metrics.py).
"""
from __future__ import annotations

import math

import numpy as np

from igan_jax.evaluation.fid import FeatureStats, frechet_distance
from igan_jax.evaluation.kernel_distance import kid
from igan_jax.evaluation.manifold_metrics import density_coverage, precision_recall

METRICS = ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage")


def feature_metrics(real: np.ndarray, real_stats: FeatureStats, fake: np.ndarray,
                    s: dict) -> dict:
  """FID, KID (mean, std over subsets), precision, recall, density, coverage of fake vs real."""
  fake_stats = FeatureStats(fake.shape[1])
  fake_stats.update(fake)
  fid = frechet_distance(real_stats.mean(), real_stats.cov(), fake_stats.mean(), fake_stats.cov())
  kid_mean, kid_std = kid(real, fake, num_subsets=s["kid_subsets"],
                          subset_size=s["kid_subset_size"], seed=0)
  precision, recall = precision_recall(real, fake, k=s["pr_k"])
  density, coverage = density_coverage(real, fake, k=s["dc_k"])
  return dict(fid=fid, kid=kid_mean, kid_std=kid_std, precision=precision, recall=recall,
              density=density, coverage=coverage)


def fid_against(mu: np.ndarray, sigma: np.ndarray, features: np.ndarray) -> float:
  """FID of `features` against a reference's mean and covariance (float64)."""
  stats = FeatureStats(features.shape[1])
  stats.update(features)
  return frechet_distance(mu, sigma, stats.mean(), stats.cov())


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


def mean_sd(rows: list[dict], keys) -> tuple[dict, dict]:
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
