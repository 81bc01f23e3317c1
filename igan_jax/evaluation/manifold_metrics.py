"""k-NN manifold metrics of feature sets: precision / recall and density / coverage.

* Improved precision and recall (Kynkäänniemi et al., 2019, "Improved
  Precision and Recall Metric for Assessing Generative Models", NeurIPS):
  :func:`precision_recall`.
* Density and coverage (Naeem et al., 2020, "Reliable Fidelity and Diversity
  Metrics for Generative Models", ICML): :func:`density_coverage`.

:func:`knn_radii` (the k-NN radii behind P/R/D/C) is not re-exported from
``igan_jax.evaluation``. Float64 numpy on ``(n, dim)`` feature arrays; pairwise distances are
computed in row blocks (feature_arrays.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from igan_jax.evaluation.feature_arrays import as_features, as_pair, block_rows, positive_int

__all__ = ["precision_recall", "density_coverage", "knn_radii"]


def _sq_norms(x: np.ndarray) -> np.ndarray:
  return np.einsum("ij,ij->i", x, x)


def _sq_dist_block(
  a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray
) -> np.ndarray:
  """Squared Euclidean distances between rows of a and b, clipped at 0."""
  g = a @ b.T
  g *= -2.0
  g += a_sq[:, None]
  g += b_sq[None, :]
  np.maximum(g, 0.0, out=g)
  return g


def _knn_sq_radii(x: np.ndarray, k: int) -> np.ndarray:
  """Squared distance from each row of x to its k-th nearest other row."""
  n = x.shape[0]
  sq = _sq_norms(x)
  out = np.empty(n, dtype=np.float64)
  rows = block_rows(n)
  for i0 in range(0, n, rows):
    i1 = min(i0 + rows, n)
    d2 = _sq_dist_block(x[i0:i1], sq[i0:i1], x, sq)
    r = np.arange(i1 - i0)
    d2[r, i0 + r] = 0.0  # the point itself is the 0-th neighbour
    out[i0:i1] = np.partition(d2, k, axis=1)[:, k]
  return out


def _check_k(k: Any, sizes: dict[str, int]) -> int:
  k = positive_int(k, "k")
  for name, n in sizes.items():
    if k >= n:
      raise ValueError(f"k={k} needs more than k rows in {name}, which has {n}")
  return k


def knn_radii(feats: Any, k: int) -> np.ndarray:
  """Euclidean distance from each row to its k-th nearest neighbour in the same set.

  The point itself is not counted (it is the 0-th neighbour); exact
  duplicates are, so the radius is 0 for a point with >= k duplicates.
  """
  x = as_features(feats, "feats")
  k = _check_k(k, {"feats": x.shape[0]})
  return np.sqrt(_knn_sq_radii(x, k))


def precision_recall(real: Any, fake: Any, k: int = 3) -> tuple[float, float]:
  """Improved precision and recall (Kynkäänniemi et al., 2019).

  The manifold of a set Phi is the union of balls around its points, each
  with radius the distance to the point's k-th nearest neighbour in Phi
  (itself excluded)::

    f(phi, Phi) = 1  if  ||phi - phi'|| <= ||phi' - NN_k(phi')||  for some phi' in Phi
    precision   = mean over fake phi_g of f(phi_g, real)
    recall      = mean over real phi_r of f(phi_r, fake)

  Boundary choice: we count a point *on* a ball's boundary as inside
  (``<=``), as in Kynkäänniemi et al. The ``prdc`` package uses strict ``<``.
  The two differ only on exact distance ties. With continuous features that
  means exact duplicates (mode collapse): a point with >= k exact duplicates
  in its own set has radius 0, and with ``<=`` its ball still holds the
  samples equal to it, while with ``<`` it is empty. The same convention is
  used in :func:`density_coverage`.

  Distances are Euclidean, computed in float64 in row blocks.
  Returns ``(precision, recall)`` in [0, 1]. Needs ``1 <= k < len(real)``
  and ``k < len(fake)``.
  """
  x, y = as_pair(real, fake, ("real", "fake"))
  k = _check_k(k, {"real": x.shape[0], "fake": y.shape[0]})
  r_real = _knn_sq_radii(x, k)
  r_fake = _knn_sq_radii(y, k)
  x_sq, y_sq = _sq_norms(x), _sq_norms(y)
  precise = np.zeros(y.shape[0], dtype=bool)
  recalled = np.zeros(x.shape[0], dtype=bool)
  rows = block_rows(x.shape[0])
  for j0 in range(0, y.shape[0], rows):
    j1 = min(j0 + rows, y.shape[0])
    d2 = _sq_dist_block(y[j0:j1], y_sq[j0:j1], x, x_sq)  # (fake block, real)
    precise[j0:j1] = (d2 <= r_real[None, :]).any(axis=1)
    recalled |= (d2 <= r_fake[j0:j1, None]).any(axis=0)
  return float(precise.mean()), float(recalled.mean())


def density_coverage(real: Any, fake: Any, k: int = 5) -> tuple[float, float]:
  """Density and coverage (Naeem et al., 2020).

  With ``B(x_i) `` the ball around real point x_i of radius NND_k(x_i), the
  distance to its k-th nearest real neighbour (itself excluded), for N real
  and M fake samples::

    density  = 1 / (k M) * sum_j sum_i 1[y_j in B(x_i)]
    coverage = 1 / N     * sum_i 1[exists j: y_j in B(x_i)]

  Density is not bounded by 1 (it is ~1 when fake matches real). For two
  independent samples of one distribution with M = N, E[coverage] ->
  1 - 2^-k. Only real-set radii are used, so coverage is robust to fake
  outliers. Ball membership uses ``<=`` (see :func:`precision_recall`; the
  ``prdc`` package uses ``<``). Needs ``1 <= k < len(real)``.

  Returns ``(density, coverage)``.
  """
  x, y = as_pair(real, fake, ("real", "fake"))
  k = _check_k(k, {"real": x.shape[0]})
  r_real = _knn_sq_radii(x, k)
  x_sq, y_sq = _sq_norms(x), _sq_norms(y)
  inside_count = 0
  covered = np.zeros(x.shape[0], dtype=bool)
  rows = block_rows(x.shape[0])
  for j0 in range(0, y.shape[0], rows):
    j1 = min(j0 + rows, y.shape[0])
    inside = _sq_dist_block(y[j0:j1], y_sq[j0:j1], x, x_sq) <= r_real[None, :]
    inside_count += int(inside.sum())
    covered |= inside.any(axis=0)
  return inside_count / (k * y.shape[0]), float(covered.mean())
