"""Property tests (hypothesis) over random valid inputs: the learning-rate schedule, the
adversarial losses and the gradient penalty (docs/paper.md §2) are finite, have the right sign
and bounds.

Arrays have fixed shapes and hyperparameters are traced arguments wherever the code allows, so
each jitted function compiles once and the examples only run it.
"""
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from igan_jax import losses, optim
from igan_jax.config import base_config

SETTINGS = settings(max_examples=30, deadline=None)
N = 16                      # logits per batch
IMAGE = (3, 4, 4, 2)        # (B, H, W, C) for the gradient penalty


def f32(lo, hi, **kw):
  return st.floats(lo, hi, width=32, allow_nan=False, allow_infinity=False, **kw)


# ---------------------------------------------------------------------------------------------
# The schedule: lr(t) = end + (init − end)·γ^(t / decay_steps), G's = 1.5 × D's
# (docs/paper.md §2).

# 64 iterations from 0 up to 10⁷ (beyond any run), sorted, duplicates allowed.
STEPS = hnp.arrays(np.int64, 64, elements=st.integers(0, 10**7)).map(np.sort)


@st.composite
def schedule_params(draw, float_decay_steps=True):
  init = draw(st.floats(1e-7, 1.0))
  end = init * draw(st.floats(1e-4, 1.0))  # 0 < end ≤ init
  # γ ∈ (0, 1] as float32 holds it: a γ below float32's smallest normal number (1.2e-38) becomes
  # 0 inside the schedule (lr = end_lr from t = 1 on), which no one configures.
  # Drawn as float32 values: the schedule computes in float32, γ included, and for γ near 1
  # γ's own rounding alone moves γ^t by ~t·ulp(γ) (2e-5 relative at γ = 0.99966, t = 2,900).
  gamma = float(np.float32(draw(st.floats(float(np.finfo(np.float32).tiny), 1.0))))
  steps = st.integers(1, 10**6)  # the config holds an integer
  if float_decay_steps:
    steps = st.one_of(steps, st.floats(1.0, 1e6))
  return init, end, gamma, draw(steps)


@SETTINGS
@given(schedule_params(), STEPS)
def test_schedule_finite_monotone_bounded_and_the_formula(params, steps):
  init, end, gamma, decay_steps = params
  lr = np.asarray(jax.jit(optim.igan_decay(init, end, gamma, decay_steps))(steps), np.float64)
  assert np.all(np.isfinite(lr))
  assert np.all(np.diff(lr) <= 0), "not monotone non-increasing in t"
  # float32 arithmetic: bounds hold to a few ulp of init_lr.
  tol = 4 * np.finfo(np.float32).eps * init
  assert np.all(lr >= end - tol) and np.all(lr <= init + tol), (lr.min(), lr.max(), end, init)
  want = end + (init - end) * np.power(gamma, steps / decay_steps)
  np.testing.assert_allclose(lr, want, rtol=2e-5, atol=tol)
  if steps[0] == 0:
    np.testing.assert_allclose(lr[0], init, rtol=1e-6)


@SETTINGS
@given(schedule_params(float_decay_steps=False), STEPS)
def test_generator_rate_is_one_and_a_half_times_the_discriminators(params, steps):
  cfg = base_config().optim
  assert cfg.g_lr_ratio == 1.5  # docs/paper.md §2
  cfg.d_init_lr, cfg.d_end_lr, cfg.gamma, cfg.decay_steps = params
  d, g = optim.schedules(cfg)
  np.testing.assert_allclose(jax.jit(g)(steps), 1.5 * jax.jit(d)(steps), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# The adversarial losses over random finite logits and labels α (real), β (fake) in [0, 1].

LOGITS = hnp.arrays(np.float32, N, elements=f32(-1e4, 1e4))
LABEL = f32(0.0, 1.0)


def _losses_and_grads(real, fake, alpha, beta):
  """{loss name: d and g values, and their gradients in the logits}."""
  out = {}
  for name in losses.LOSSES:
    d_fn, g_fn = losses.get_losses(name)
    d, (gr, gf) = jax.value_and_grad(d_fn, argnums=(0, 1))(real, fake, alpha, beta)
    g, gg = jax.value_and_grad(g_fn)(fake, alpha)
    out[name] = dict(d=d, g=g, grads=(gr, gf, gg))
  return out


losses_and_grads = jax.jit(_losses_and_grads)  # labels traced: one compile for all examples


@SETTINGS
@given(LOGITS, LOGITS, LABEL, LABEL)
def test_losses_finite_with_finite_gradients_and_nonnegative(real, fake, alpha, beta):
  out = jax.device_get(losses_and_grads(real, fake, np.float32(alpha), np.float32(beta)))
  for name, o in out.items():
    assert np.isfinite(o["d"]) and np.isfinite(o["g"]), name
    assert all(np.all(np.isfinite(x)) for x in o["grads"]), name
  for name in ("least_squares", "bce"):  # squares and cross-entropies with targets in [0, 1]
    assert out[name]["d"] >= 0 and out[name]["g"] >= 0, (name, out[name])


@SETTINGS
@given(LABEL, LABEL)
def test_least_squares_is_zero_exactly_at_the_targets(alpha, beta):
  a, b = np.float32(alpha), np.float32(beta)
  # D's targets: real logits at α, fake at β. G's target (flipped labels): fake logits at α.
  out = jax.device_get(losses_and_grads(np.full(N, a), np.full(N, b), a, b))
  assert out["least_squares"]["d"] == 0
  out = jax.device_get(losses_and_grads(np.full(N, a), np.full(N, a), a, b))
  assert out["least_squares"]["g"] == 0
  # ... and there only: one fake logit off its target β makes D's loss positive; the fakes then
  # hold two different values, so they cannot all sit at α and G's loss is positive too.
  off = np.full(N, b)
  off[0] = b + np.float32(0.5)
  out = jax.device_get(losses_and_grads(np.full(N, a), off, a, b))
  assert out["least_squares"]["d"] > 0 and out["least_squares"]["g"] > 0


@SETTINGS
@given(LOGITS, LOGITS, LABEL, LABEL)
def test_wasserstein_sign(real, fake, alpha, beta):
  out = jax.device_get(losses_and_grads(real, fake, np.float32(alpha), np.float32(beta)))
  w = out["wasserstein"]
  gap = np.mean(fake, dtype=np.float64) - np.mean(real, dtype=np.float64)
  tol = 1e-5 * (np.abs(real).max() + np.abs(fake).max() + 1)
  np.testing.assert_allclose(w["d"], gap, atol=tol)  # E[D(fake)] − E[D(real)]
  if abs(gap) > tol:
    assert np.sign(w["d"]) == np.sign(gap)
  np.testing.assert_allclose(w["g"], -np.mean(fake, dtype=np.float64), atol=tol)
  # The critic's gradient: +1/N on each fake logit, −1/N on each real one; labels ignored.
  np.testing.assert_allclose(w["grads"][0], -1.0 / N, rtol=1e-6)
  np.testing.assert_allclose(w["grads"][1], 1.0 / N, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# The gradient penalty E[(‖∇D(x̂)‖ − 1)²] with critics whose gradient norm is known.

IMAGES = hnp.arrays(np.float32, IMAGE, elements=f32(-10, 10))
WEIGHTS = hnp.arrays(np.float32, IMAGE[1:], elements=f32(-3, 3))


@jax.jit
def _linear_penalty(w, real, fake, key):
  """D(x) = Σ w·x per image: ∇D = w everywhere, so every norm is ‖w‖."""
  x_hat = losses.interpolate(key, real, fake)
  # Differentiated in w too: the penalty must give finite gradients to the critic's parameters.
  (gp, norms), dgp_dw = jax.value_and_grad(
      lambda w_: losses.gradient_penalty(lambda x: jnp.sum(x * w_, axis=(-3, -2, -1)), x_hat),
      has_aux=True)(w)
  return x_hat, gp, norms, dgp_dw


@jax.jit
def _quadratic_penalty(a, x):
  """D(x) = a/2 · ‖x‖² per image: ∇D = a·x, so each norm is |a|·‖x‖."""
  return losses.gradient_penalty(lambda v: 0.5 * a * jnp.sum(v * v, axis=(-3, -2, -1)), x)


@SETTINGS
@given(WEIGHTS, IMAGES, IMAGES, st.integers(0, 2**31 - 1))
def test_penalty_of_a_linear_critic_is_analytic(w, real, fake, seed):
  x_hat, gp, norms, dgp_dw = jax.device_get(
      _linear_penalty(w, real, fake, jax.random.PRNGKey(seed)))
  w_norm = np.linalg.norm(w.astype(np.float64))
  assert np.isfinite(gp) and gp >= 0
  np.testing.assert_allclose(norms, np.full(IMAGE[0], w_norm), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(gp, (w_norm - 1) ** 2, rtol=1e-4, atol=1e-5)
  assert np.all(np.isfinite(dgp_dw))
  # x̂ = ε·real + (1 − ε)·fake with one ε ∈ [0, 1] per image: elementwise between the two.
  tol = 1e-5 * (np.abs(real) + np.abs(fake) + 1)
  lo, hi = np.minimum(real, fake), np.maximum(real, fake)
  assert np.all(x_hat >= lo - tol) and np.all(x_hat <= hi + tol)
  for b in range(IMAGE[0]):
    diff = (real[b] - fake[b]).astype(np.float64)
    if np.abs(diff).max() > 1e-2:
      i = np.unravel_index(np.argmax(np.abs(diff)), diff.shape)
      eps = (x_hat[b][i] - fake[b][i]) / diff[i]
      np.testing.assert_allclose(x_hat[b], eps * real[b] + (1 - eps) * fake[b], atol=1e-3)
      assert -1e-3 <= eps <= 1 + 1e-3


@SETTINGS
@given(f32(-5, 5), IMAGES)
def test_penalty_of_a_quadratic_critic_is_analytic(a, x):
  gp, norms = jax.device_get(_quadratic_penalty(np.float32(a), x))
  want = abs(a) * np.linalg.norm(x.reshape(IMAGE[0], -1).astype(np.float64), axis=1)
  assert np.isfinite(gp) and gp >= 0
  np.testing.assert_allclose(norms, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(gp, np.mean((want - 1) ** 2), rtol=1e-4, atol=1e-5)
