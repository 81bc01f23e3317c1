"""KID, the Kernel Inception Distance (Bińkowski et al., 2018, "Demystifying MMD GANs", ICLR).

:func:`kid`, with its pieces :func:`mmd2_unbiased` and :func:`kid_subset_indices` (those two
are not re-exported from ``igan_jax.evaluation``). Float64 numpy on ``(n, dim)`` feature
arrays; the kernel sums are computed in row blocks (feature_arrays.py).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from igan_jax.evaluation.feature_arrays import as_pair, block_rows

__all__ = ["kid", "mmd2_unbiased", "kid_subset_indices"]


def _poly_kernel_sum(a: np.ndarray, b: np.ndarray, exclude_diagonal: bool) -> float:
  """Sum of k(a_i, b_j) = (a_i . b_j / d + 1)^3 over all (i, j), in row blocks.

  With ``exclude_diagonal`` (``a is b``), the i == j terms are left out.
  """
  d = a.shape[1]
  rows = block_rows(b.shape[0])
  total = 0.0
  for i0 in range(0, a.shape[0], rows):
    i1 = min(i0 + rows, a.shape[0])
    g = a[i0:i1] @ b.T
    g /= d
    g += 1.0
    k = g * g
    k *= g
    if exclude_diagonal:
      r = np.arange(i1 - i0)
      k[r, i0 + r] = 0.0
    total += float(k.sum())
  return total


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 with the KID kernel k(a, b) = (a . b / d + 1)^3.

  For x of m rows and y of n rows (Bińkowski et al., 2018)::

    MMD^2_u =   sum_{i != j} k(x_i, x_j) / (m (m - 1))
              + sum_{i != j} k(y_i, y_j) / (n (n - 1))
              - 2 sum_{i, j} k(x_i, y_j) / (m n)
  """
  x, y = as_pair(x, y, ("x", "y"), min_rows=2)
  m, n = x.shape[0], y.shape[0]
  kxx = _poly_kernel_sum(x, x, exclude_diagonal=True)
  kyy = _poly_kernel_sum(y, y, exclude_diagonal=True)
  kxy = _poly_kernel_sum(x, y, exclude_diagonal=False)
  return kxx / (m * (m - 1)) + kyy / (n * (n - 1)) - 2.0 * kxy / (m * n)


def kid_subset_indices(
  n1: int, n2: int, num_subsets: int, subset_size: int, seed: int | None = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
  """The subsets :func:`kid` uses: ``num_subsets`` pairs of index arrays.

  Each pair draws ``subset_size`` rows without replacement from each set
  (``subset_size`` is clipped to ``min(n1, n2)``), from
  ``np.random.default_rng(seed)``: first set, then second, per subset.
  """
  m = min(int(subset_size), n1, n2)
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(int(num_subsets)):
    i1 = rng.choice(n1, size=m, replace=False)
    i2 = rng.choice(n2, size=m, replace=False)
    out.append((i1, i2))
  return out


def kid(
  feats1: Any,
  feats2: Any,
  num_subsets: int = 100,
  subset_size: int = 1000,
  seed: int | None = 0,
) -> tuple[float, float]:
  """Kernel Inception Distance (Bińkowski et al., 2018).

  The unbiased MMD^2 estimate (see :func:`mmd2_unbiased`) with the cubic
  polynomial kernel ``k(a, b) = (a . b / d + 1)^3`` (``d`` = feature
  dimension), averaged over ``num_subsets`` random subsets of
  ``subset_size`` rows drawn without replacement from each set
  (``subset_size`` is clipped to ``min(n1, n2)``; see
  :func:`kid_subset_indices`). Kernel sums are computed with matrix
  products in row blocks; the diagonal terms are excluded exactly.

  Unlike FID, the estimator is unbiased, so it can be negative and is ~0
  for two samples of the same distribution.

  Returns ``(mean, std)`` over the subsets; ``std`` is the spread of the
  per-subset estimates (``ddof=0``), not a standard error of the mean.
  Deterministic for a fixed ``seed``.
  """
  a, b = as_pair(feats1, feats2, ("feats1", "feats2"), min_rows=2)
  num_subsets = operator.index(num_subsets)
  subset_size = operator.index(subset_size)
  if num_subsets < 1:
    raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
  if subset_size < 2:
    raise ValueError(f"subset_size must be >= 2, got {subset_size}")
  vals = np.array(
    [
      mmd2_unbiased(a[i1], b[i2])
      for i1, i2 in kid_subset_indices(
        a.shape[0], b.shape[0], num_subsets, subset_size, seed
      )
    ]
  )
  return float(vals.mean()), float(vals.std())
