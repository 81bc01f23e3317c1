"""Feature arrays as every metric takes them: checked float64 ``(n, dim)`` arrays, row blocks.

The metrics (fid.py, kernel_distance.py, manifold_metrics.py) take plain ``(n, dim)`` feature
arrays, whatever network produced them, and do all arithmetic in float64 numpy. Pairwise work
(k-NN radii, the KID kernel sums) is done in row blocks of at most ``BLOCK_BYTES`` (256 MiB)
each: for 10k vs 10k sets of 2048-d features the whole process peaked at ~1.1 GB RSS (FID, P/R,
D/C and KID in turn).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

# Upper bound (bytes) on one float64 block of a pairwise matrix.
BLOCK_BYTES = 256 * 2**20


def as_features(x: Any, name: str, min_rows: int = 1) -> np.ndarray:
  """Return ``x`` as a finite float64 ``(n, dim)`` array or raise ValueError."""
  arr = np.asarray(x)
  if arr.ndim != 2:
    raise ValueError(f"{name} must be a 2-D (n, dim) array, got shape {arr.shape}")
  if arr.shape[1] < 1:
    raise ValueError(f"{name} must have at least one feature column, got shape {arr.shape}")
  if arr.shape[0] < min_rows:
    raise ValueError(
      f"{name} needs at least {min_rows} row(s), got shape {arr.shape}"
    )
  try:
    arr = arr.astype(np.float64, copy=False)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}") from e
  if not np.isfinite(arr).all():
    raise ValueError(f"{name} contains NaN or infinite values")
  return arr


def as_pair(x: Any, y: Any, names: tuple[str, str], min_rows: int = 1):
  """Both sets through :func:`as_features`; raise ValueError if their dimensions differ."""
  a = as_features(x, names[0], min_rows)
  b = as_features(y, names[1], min_rows)
  if a.shape[1] != b.shape[1]:
    raise ValueError(
      f"feature dimensions differ: {names[0]} has {a.shape[1]}, "
      f"{names[1]} has {b.shape[1]}"
    )
  return a, b


def block_rows(n_cols: int) -> int:
  """Rows per block so that a (rows, n_cols) float64 block fits BLOCK_BYTES."""
  return max(1, int(BLOCK_BYTES) // (8 * max(1, n_cols)))


def positive_int(value: Any, name: str) -> int:
  """`value` as an int ≥ 1, or ValueError naming `name` (integer-like numpy values accepted)."""
  try:
    value = operator.index(value)
  except TypeError as e:
    raise ValueError(f"{name} must be an integer, got {value!r}") from e
  if value < 1:
    raise ValueError(f"{name} must be >= 1, got {value}")
  return value
