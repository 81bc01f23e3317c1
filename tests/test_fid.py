"""Feature-space metrics (igan_jax/evaluation/: fid.py, kernel_distance.py, manifold_metrics.py,
feature_arrays.py): FeatureStats, Fréchet distance, KID, precision/recall, density/coverage.

Oracles, from the definitions of the metrics:
- Fréchet distance between Gaussians, d² = ‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2(Σ1Σ2)^½) (Fréchet 1957;
  Dowson & Landau 1982; as FID, Heusel et al. 2017), in closed form:
  (1) Σ1 = Σ2 = I, μ1 = 0, μ2 = 1 in d = 2048 dimensions gives d;
  (2) identical statistics give 0, also rank-deficient ones;
  (3) commuting Σ1 = Q diag(a) Qᵀ, Σ2 = Q diag(b) Qᵀ give ‖μ1 − μ2‖² + Σ(√a − √b)²;
  (4) in 1-D, (m1 − m2)² + (s1 − s2)²;
  (5) scipy.linalg.sqrtm as an independent reference;
  (6) fewer samples than dimensions: finite, real and ≥ 0;
  (7) symmetry, FD(cX, cY) = c²·FD(X, Y) and FD(X + t, Y + t) = FD(X, Y).
- KID (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased MMD² with the kernel
  (x·y/d + 1)³ against the explicit O(m²) double sum on the same subsets.
- Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020): a
  hand-built set with known k-NN radii, a brute-force per-point reference, and Naeem et al.'s
  law E[coverage] → 1 − 2^-k for two draws of one distribution.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from igan_jax.evaluation import (
  FeatureStats,
  density_coverage,
  feature_statistics,
  fid_from_features,
  frechet_distance,
  kid,
  precision_recall,
)
from igan_jax.evaluation import feature_arrays, kernel_distance, manifold_metrics

HYP = settings(max_examples=25, deadline=None, database=None, derandomize=True)


def rel_err(a, b):
  return abs(a - b) / max(abs(b), 1e-300)


def random_spd(rng, d, ridge=0.1):
  a = rng.standard_normal((d, d))
  return a @ a.T / d + ridge * np.eye(d)


def random_orthogonal(rng, d):
  q, r = np.linalg.qr(rng.standard_normal((d, d)))
  return q * np.sign(np.diag(r))


# ------------------------------------------------------------------------------------------------
# FeatureStats / feature_statistics
# ------------------------------------------------------------------------------------------------


def test_feature_stats_streaming_matches_np_cov():
  rng = np.random.default_rng(0)
  d = 12
  # A large common offset breaks naive sum-of-squares accumulators; mixed dtypes and batch sizes
  # (including 1 and 0) exercise the merge.
  batches = [
    (1e4 + rng.standard_normal((n, d)) * rng.uniform(0.1, 5, d)).astype(dt)
    for n, dt in [(1, np.float64), (7, np.float32), (0, np.float64), (50, np.float64),
                  (3, np.float16), (200, np.float64)]
  ]
  stats = FeatureStats(d)
  for b in batches:
    stats.update(b)
  all_feats = np.concatenate([b.astype(np.float64) for b in batches])
  ref_cov = np.cov(all_feats, rowvar=False)
  assert stats.count == 261
  np.testing.assert_allclose(stats.mean(), all_feats.mean(0), rtol=1e-12)
  assert np.abs(stats.cov() - ref_cov).max() <= 1e-10 * np.abs(ref_cov).max()
  mu, sigma = feature_statistics(all_feats)
  np.testing.assert_allclose(mu, stats.mean(), rtol=1e-12)
  assert np.abs(sigma - stats.cov()).max() <= 1e-10 * np.abs(ref_cov).max()


@HYP
@given(
  st.integers(1, 6),
  st.lists(st.integers(0, 9), min_size=1, max_size=6),
  st.integers(0, 2**32 - 1),
)
def test_feature_stats_any_batching(d, sizes, seed):
  rng = np.random.default_rng(seed)
  sizes = sizes + [2]
  feats = rng.standard_normal((sum(sizes), d)) * 3 + rng.standard_normal(d) * 100
  stats = FeatureStats(d)
  start = 0
  for n in sizes:
    stats.update(feats[start:start + n])
    start += n
  ref = np.atleast_2d(np.cov(feats, rowvar=False))
  assert stats.cov().shape == (d, d)
  assert np.abs(stats.cov() - ref).max() <= 1e-10 * np.abs(ref).max()


def test_feature_stats_dim1_and_shapes():
  x = np.arange(10.0)[:, None]
  s = FeatureStats(1)
  s.update(x)
  assert s.mean().shape == (1,) and s.cov().shape == (1, 1)
  assert s.cov()[0, 0] == pytest.approx(np.var(x, ddof=1))
  mu, sigma = feature_statistics(x)
  assert mu.shape == (1,) and sigma.shape == (1, 1)


def test_feature_stats_roundtrip_npz(tmp_path):
  rng = np.random.default_rng(1)
  a, b = rng.standard_normal((40, 5)), rng.standard_normal((30, 5)) + 2
  s = FeatureStats(5)
  s.update(a)
  np.savez(tmp_path / "stats.npz", **s.to_dict())
  with np.load(tmp_path / "stats.npz") as z:
    r = FeatureStats.from_dict(z)
  assert r.count == 40 and r.dim == 5
  np.testing.assert_array_equal(r.mean(), s.mean())
  np.testing.assert_array_equal(r.cov(), s.cov())
  r.update(b)  # a reloaded accumulator keeps streaming
  ref = np.cov(np.concatenate([a, b]), rowvar=False)
  assert np.abs(r.cov() - ref).max() <= 1e-10 * np.abs(ref).max()
  # from_dict copies: mutating the source does not change the accumulator
  d = s.to_dict()
  t = FeatureStats.from_dict(d)
  d["mean"][:] = 99
  assert not np.any(t.mean() == 99)


def test_feature_stats_errors():
  with pytest.raises(ValueError):
    FeatureStats(0)
  s = FeatureStats(3)
  with pytest.raises(ValueError, match="shape"):
    s.update(np.zeros((4, 2)))
  with pytest.raises(ValueError, match="shape"):
    s.update(np.zeros(3))
  with pytest.raises(ValueError):
    s.mean()
  s.update(np.zeros((1, 3)))
  with pytest.raises(ValueError, match="2 samples"):
    s.cov()
  with pytest.raises(ValueError, match="NaN"):
    s.update(np.full((2, 3), np.nan))
  assert s.count == 1  # a rejected batch leaves the state untouched
  with pytest.raises(ValueError):
    FeatureStats.from_dict({"count": np.int64(2), "mean": np.zeros(3), "m2": np.zeros((2, 2))})
  with pytest.raises(ValueError, match="missing"):
    FeatureStats.from_dict({"mean": np.zeros(3)})
  with pytest.raises(ValueError):
    feature_statistics(np.zeros((1, 3)))


# ------------------------------------------------------------------------------------------------
# Fréchet distance: oracles 1-7
# ------------------------------------------------------------------------------------------------


def test_fd_oracle1_identity_unit_shift():
  d = 2048
  value = frechet_distance(np.zeros(d), np.eye(d), np.ones(d), np.eye(d))
  assert isinstance(value, float)
  assert value == pytest.approx(2048.0, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize("d,n", [(32, 500), (256, 64), (200, 7)])
def test_fd_oracle2_identical_statistics(d, n):
  """Identical statistics → 0, also for rank-deficient sample covariances (n ≤ d)."""
  rng = np.random.default_rng(d + n)
  x = rng.standard_normal((n, d)) * rng.uniform(0.1, 3.0, d) + 5.0
  mu, sigma = feature_statistics(x)
  assert np.linalg.matrix_rank(sigma) == min(n - 1, d)
  value = frechet_distance(mu, sigma, mu, sigma)
  assert abs(value) <= 1e-8 * np.trace(sigma)
  assert abs(fid_from_features(x, x.copy())) <= 1e-8 * np.trace(sigma)


@pytest.mark.parametrize("d,zeros", [(64, 0), (128, 10)])
def test_fd_oracle3_commuting_covariances(d, zeros):
  rng = np.random.default_rng(3 + d)
  q = random_orthogonal(rng, d)
  a, b = rng.uniform(0.1, 5.0, d), rng.uniform(0.1, 5.0, d)
  a[:zeros] = 0.0  # singular, still commuting: √0 terms
  b[zeros // 2:zeros] = 0.0
  s1, s2 = (q * a) @ q.T, (q * b) @ q.T
  s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
  mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  assert rel_err(frechet_distance(mu1, s1, mu2, s2), expected) <= 1e-9


@pytest.mark.parametrize("m1,m2,s1,s2", [(0.0, 0.0, 1.0, 1.0), (1.5, -2.0, 0.3, 4.0),
                                         (1e3, 1e3 + 1, 2.0, 0.0), (-3.0, 7.0, 1e-4, 1e2)])
def test_fd_oracle4_one_dimensional(m1, m2, s1, s2):
  value = frechet_distance(np.array([m1]), np.array([[s1**2]]), np.array([m2]),
                           np.array([[s2**2]]))
  expected = (m1 - m2) ** 2 + (s1 - s2) ** 2
  assert value == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("d", [16, 64, 256])
def test_fd_oracle5_matches_scipy_sqrtm(d):
  sl = pytest.importorskip("scipy.linalg")
  rng = np.random.default_rng(5 + d)
  s1, s2 = random_spd(rng, d), random_spd(rng, d)
  mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d) * 0.5
  covmean = sl.sqrtm(s1 @ s2)
  ref = (np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
         - 2 * float(np.real(np.trace(covmean))))
  assert rel_err(frechet_distance(mu1, s1, mu2, s2), ref) <= 1e-6


def test_fd_cholesky_and_eigh_factor_paths_agree(monkeypatch):
  """Positive definite covariances use Cholesky factors; singular ones the clipped eigh factor."""
  rng = np.random.default_rng(55)
  d = 48
  s1, s2 = random_spd(rng, d, ridge=0.01), random_spd(rng, d, ridge=0.01)
  mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
  fast = frechet_distance(mu1, s1, mu2, s2)

  def no_cholesky(a):
    raise np.linalg.LinAlgError("forced")

  monkeypatch.setattr(np.linalg, "cholesky", no_cholesky)
  assert rel_err(frechet_distance(mu1, s1, mu2, s2), fast) <= 1e-10


def test_fd_oracle6_fewer_samples_than_dims():
  d = 256
  rng = np.random.default_rng(6)
  x = rng.standard_normal((d // 2, d))
  y = rng.standard_normal((d // 2, d)) * 1.1 + 0.05
  value = fid_from_features(x, y)
  assert isinstance(value, float) and math.isfinite(value)
  assert value >= -1e-6
  # Same-distribution small samples: FD is biased upwards but must stay real and ≥ 0.
  assert fid_from_features(x, rng.standard_normal((d // 2, d))) >= -1e-6
  # Agrees with the other usual route, the square roots of the eigenvalues of Σ1Σ2, loosely:
  # that route loses ~√eps per null direction.
  (mu1, s1), (mu2, s2) = feature_statistics(x), feature_statistics(y)
  ev = np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)
  alt = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(ev).sum()
  assert rel_err(value, alt) <= 1e-6


def test_fd_oracle7_symmetry_scaling_translation():
  rng = np.random.default_rng(7)
  d = 24
  x = rng.standard_normal((300, d)) @ rng.standard_normal((d, d)) * 0.3
  y = rng.standard_normal((200, d)) * 1.3 + 0.4
  base = fid_from_features(x, y)
  assert base > 1.0
  assert rel_err(fid_from_features(y, x), base) <= 1e-9
  (mu1, s1), (mu2, s2) = feature_statistics(x), feature_statistics(y)
  assert rel_err(frechet_distance(mu2, s2, mu1, s1), frechet_distance(mu1, s1, mu2, s2)) <= 1e-9
  for c in (0.1, 3.0, -2.0):
    assert rel_err(fid_from_features(c * x, c * y), c * c * base) <= 1e-9
  t = rng.standard_normal(d) * 50
  assert rel_err(fid_from_features(x + t, y + t), base) <= 1e-9


@HYP
@given(
  st.integers(1, 12).flatmap(lambda d: st.tuples(
    st.just(d),
    st.integers(1, 2 * d),  # rank of each factor: rank-deficient half the time
    st.integers(1, 2 * d),
  )).flatmap(lambda t: st.tuples(
    hnp.arrays(np.float64, (t[0], t[1]), elements=st.floats(-3, 3)),
    hnp.arrays(np.float64, (t[0], t[2]), elements=st.floats(-3, 3)),
    hnp.arrays(np.float64, (t[0],), elements=st.floats(-5, 5)),
    hnp.arrays(np.float64, (t[0],), elements=st.floats(-5, 5)),
  )))
def test_fd_property_nonnegative_and_symmetric(args):
  a, b, mu1, mu2 = args
  s1, s2 = a @ a.T, b @ b.T
  fwd = frechet_distance(mu1, s1, mu2, s2)
  bwd = frechet_distance(mu2, s2, mu1, s1)
  scale = 1.0 + np.trace(s1) + np.trace(s2) + np.sum((mu1 - mu2) ** 2)
  assert fwd >= -1e-6 and bwd >= -1e-6
  assert abs(fwd - bwd) <= 1e-9 * scale
  assert abs(frechet_distance(mu1, s1, mu1, s1)) <= 1e-9 * scale


def test_fd_validation_errors():
  mu, s = np.zeros(3), np.eye(3)
  with pytest.raises(ValueError, match="mismatch"):
    frechet_distance(mu, s, np.zeros(4), np.eye(4))
  with pytest.raises(ValueError, match="sigma1"):
    frechet_distance(mu, np.eye(4), mu, s)
  with pytest.raises(ValueError, match="sigma2"):
    frechet_distance(mu, s, mu, np.ones((3, 2)))
  with pytest.raises(ValueError, match="mu1"):
    frechet_distance(np.zeros((1, 3)), s, mu, s)
  with pytest.raises(ValueError, match="symmetric"):
    frechet_distance(mu, np.triu(np.ones((3, 3))), mu, s)
  with pytest.raises(ValueError, match="NaN"):
    frechet_distance(mu, s, np.array([0, np.nan, 0]), s)
  with pytest.raises(ValueError, match="dimensions differ"):
    fid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))


# ------------------------------------------------------------------------------------------------
# KID
# ------------------------------------------------------------------------------------------------


def explicit_mmd2(x, y):
  """Unbiased MMD² with k(a, b) = (a·b/d + 1)³, written as the plain O(m²) double sums."""
  d = x.shape[1]

  def k(a, b):
    return (float(np.dot(a, b)) / d + 1.0) ** 3

  m, n = len(x), len(y)
  sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
  syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j)
  sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n))
  return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)


def test_kid_matches_explicit_formula_on_same_subsets(monkeypatch):
  rng = np.random.default_rng(11)
  x = rng.standard_normal((60, 8))
  y = rng.standard_normal((45, 8)) * 1.2 + 0.3
  subsets = kernel_distance.kid_subset_indices(60, 45, num_subsets=5, subset_size=20, seed=3)
  per_subset = np.array([explicit_mmd2(x[i], y[j]) for i, j in subsets])
  for (i, j), ref in zip(subsets, per_subset):
    assert abs(kernel_distance.mmd2_unbiased(x[i], y[j]) - ref) <= 1e-9 * max(1.0, abs(ref))
  mean, std = kid(x, y, num_subsets=5, subset_size=20, seed=3)
  assert abs(mean - per_subset.mean()) <= 1e-9
  assert abs(std - per_subset.std()) <= 1e-9
  # Row blocking of the kernel sums (forced down to 3 rows) changes nothing.
  monkeypatch.setattr(feature_arrays, "BLOCK_BYTES", 8 * 20 * 3)
  mean_blocked, std_blocked = kid(x, y, num_subsets=5, subset_size=20, seed=3)
  assert abs(mean_blocked - mean) <= 1e-12 and abs(std_blocked - std) <= 1e-12


def test_kid_same_distribution_near_zero_and_detects_shift():
  rng = np.random.default_rng(12)
  d, n, subsets = 16, 4000, 100
  x, y = rng.standard_normal((n, d)), rng.standard_normal((n, d))
  mean, std = kid(x, y, num_subsets=subsets, subset_size=100, seed=0)
  se = std / math.sqrt(subsets)
  assert std > 0 and abs(mean) <= 3 * se
  mean_shift, std_shift = kid(x, y + 0.3, num_subsets=subsets, subset_size=100, seed=0)
  assert mean_shift > 3 * std_shift / math.sqrt(subsets) and mean_shift > 10 * abs(mean)


def test_kid_seeded_determinism_and_clipping():
  rng = np.random.default_rng(13)
  x, y = rng.standard_normal((80, 6)), rng.standard_normal((30, 6)) + 0.2
  a = kid(x, y, num_subsets=10, subset_size=20, seed=5)
  assert kid(x, y, num_subsets=10, subset_size=20, seed=5) == a
  assert kid(x, y, num_subsets=10, subset_size=20, seed=6) != a
  # subset_size is clipped to min(n1, n2) = 30
  assert kid(x, y, num_subsets=4, subset_size=1000, seed=1) == kid(
    x, y, num_subsets=4, subset_size=30, seed=1)
  assert all(len(i) == 30 == len(j)
             for i, j in kernel_distance.kid_subset_indices(80, 30, 4, 1000, 1))
  # Every subset draws without replacement.
  assert all(len(set(i)) == len(i) for i, _ in kernel_distance.kid_subset_indices(80, 30, 4, 25, 1))


def test_kid_validation_errors():
  x = np.zeros((10, 4))
  with pytest.raises(ValueError, match="dimensions differ"):
    kid(x, np.zeros((10, 5)))
  with pytest.raises(ValueError):
    kid(x, x, num_subsets=0)
  with pytest.raises(ValueError):
    kid(x, x, subset_size=1)
  with pytest.raises(ValueError):
    kid(x[:1], x)


# ------------------------------------------------------------------------------------------------
# Precision / recall / density / coverage
# ------------------------------------------------------------------------------------------------


def brute_force_prdc(real, fake, k, strict=False):
  """Per-point reference: exact pairwise distances, sorted neighbour lists, no blocking."""
  le = np.less if strict else np.less_equal

  def radii(x):
    dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    return np.sort(dist, axis=1)[:, k]  # column 0 is the point itself

  d_fr = np.sqrt(((fake[:, None, :] - real[None, :, :]) ** 2).sum(-1))  # (M, N)
  r_real, r_fake = radii(real), radii(fake)
  precision = np.mean([le(d_fr[j], r_real).any() for j in range(len(fake))])
  recall = np.mean([le(d_fr[:, i], r_fake).any() for i in range(len(real))])
  density = sum(le(d_fr[j], r_real).sum() for j in range(len(fake))) / (k * len(fake))
  coverage = np.mean([le(d_fr[:, i].min(), r_real[i]) for i in range(len(real))])
  return precision, recall, density, coverage


# A 1-D set worked out by hand (integer coordinates: every distance is exact in float64).
REAL_1D = np.array([0.0, 1.0, 3.0, 7.0, 30.0, 40.0])[:, None]
FAKE_1D = np.array([-1.0, 2.0, 5.0, 12.0])[:, None]


def test_knn_radii_hand_built():
  np.testing.assert_array_equal(manifold_metrics.knn_radii(REAL_1D, 1), [1, 1, 2, 4, 10, 10])
  np.testing.assert_array_equal(manifold_metrics.knn_radii(REAL_1D, 2), [3, 2, 3, 6, 23, 33])
  np.testing.assert_array_equal(manifold_metrics.knn_radii(FAKE_1D, 1), [3, 3, 3, 7])
  # Exact duplicates count as neighbours: a point with k duplicates has radius 0.
  dup = np.array([[0.0], [0.0], [0.0], [5.0]])
  np.testing.assert_array_equal(manifold_metrics.knn_radii(dup, 2), [0, 0, 0, 5])


def test_prdc_hand_built_known_values():
  # k = 1. Real radii 1, 1, 2, 4, 10, 10; fake radii 3, 3, 3, 7.
  # Precision: -1 (on the boundary of 0's ball: |-1 - 0| = 1 = r), 2 and 5 inside; 12 outside.
  # Recall: 0, 1, 3, 7 are within a fake ball; 30 and 40 are not.
  # Density: balls containing -1: {0}; 2: {1, 3}; 5: {3, 7}; 12: none → 5 / (1·4).
  # Coverage: 0, 1, 3, 7 have a fake within their radius; 30 and 40 do not.
  p, r = precision_recall(REAL_1D, FAKE_1D, k=1)
  dens, cov = density_coverage(REAL_1D, FAKE_1D, k=1)
  assert (p, r) == (3 / 4, 4 / 6)
  assert (dens, cov) == (5 / 4, 4 / 6)
  # The documented `<=` choice: with strict `<` (the prdc package), -1 falls out of 0's ball.
  assert brute_force_prdc(REAL_1D, FAKE_1D, 1) == pytest.approx((3 / 4, 4 / 6, 5 / 4, 4 / 6))
  assert brute_force_prdc(REAL_1D, FAKE_1D, 1, strict=True)[0] == 2 / 4


def test_prdc_identical_and_far_apart():
  rng = np.random.default_rng(21)
  real = rng.standard_normal((300, 8))
  p, r = precision_recall(real, real.copy(), k=3)
  dens, cov = density_coverage(real, real.copy(), k=5)
  assert p == 1.0 and r == 1.0 and cov == 1.0
  assert dens > 0.5
  far = rng.standard_normal((250, 8)) + 100.0
  assert precision_recall(real, far, k=3) == (0.0, 0.0)
  assert density_coverage(real, far, k=5) == (0.0, 0.0)


@pytest.mark.parametrize("block_bytes", [None, 8 * 40 * 7])
def test_prdc_matches_brute_force(monkeypatch, block_bytes):
  """Random data with exact duplicates and ties (small integer coordinates), blocked or not."""
  if block_bytes is not None:
    monkeypatch.setattr(feature_arrays, "BLOCK_BYTES", block_bytes)  # 7 rows per block
  rng = np.random.default_rng(22)
  real = rng.integers(-3, 4, size=(40, 3)).astype(np.float64)
  fake = rng.integers(-2, 5, size=(33, 3)).astype(np.float32)  # any float dtype
  for k in (1, 3, 5):
    p, r, dens, cov = brute_force_prdc(real, fake.astype(np.float64), k)
    assert precision_recall(real, fake, k=k) == pytest.approx((p, r), abs=1e-15)
    assert density_coverage(real, fake, k=k) == pytest.approx((dens, cov), abs=1e-15)


@pytest.mark.parametrize("k", [3, 5])
def test_coverage_same_distribution_law(k):
  """Naeem et al. 2020: E[coverage] → 1 − 2^-k for two same-distribution draws, M = N."""
  rng = np.random.default_rng(30 + k)
  real, fake = rng.standard_normal((2000, 16)), rng.standard_normal((2000, 16))
  dens, cov = density_coverage(real, fake, k=k)
  assert abs(cov - (1 - 2.0**-k)) <= 0.02
  assert abs(dens - 1.0) <= 0.1  # E[density] = 1 for identical distributions


def test_block_budget():
  rows = feature_arrays.block_rows(10_000)
  assert 1 <= rows and rows * 10_000 * 8 <= feature_arrays.BLOCK_BYTES


def test_prdc_validation_errors():
  x = np.zeros((5, 2))
  with pytest.raises(ValueError, match="k=5"):
    precision_recall(x, np.ones((10, 2)), k=5)
  with pytest.raises(ValueError, match="fake"):
    precision_recall(np.ones((10, 2)), x, k=5)
  with pytest.raises(ValueError):
    density_coverage(x, x, k=0)
  with pytest.raises(ValueError, match="dimensions differ"):
    density_coverage(x, np.zeros((5, 3)), k=2)
  # density/coverage only need k < len(real)
  assert density_coverage(np.arange(10.0)[:, None], x[:2, :1], k=5)[1] >= 0
