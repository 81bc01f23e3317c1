"""How train_step wires the losses, pinned by values computed outside it (docs/paper.md §2).

The other step tests only check that an iteration is finite, moves the parameters and is
deterministic: they would still pass with the label targets α and β swapped, the generator
trained toward β, the penalty weight λ dropped, no instance noise, the wrong learning rates, or
real[0] reused for every critic update. Here one iteration of a tiny IGAN is recomputed by hand
from the state's own apply functions: the least-squares losses and the gradient penalty written
out, Adam written out with the learning rates as literals (D 0.002, G 1.5 × 0.002 = 0.003), and
the random keys derived as the step documents them (key = fold_in(rng, step); critic update i
uses fold_in(fold_in(key, 1), i) split into z, dropout, noise-real, noise-fake, ε; the generator
fold_in(key, 2) split into z, dropout, noise). α = 0.7 and β = 0.2 (not 0.9/0.1, not 1 − each
other) so that a swap shows. Each comparison is paired with a near miss (the bug's value) that
must NOT match, so every test shows it can fail. Last, for igan_v2, discriminator 0 must not
see class 1's images.

The hand computation follows the default recipe options (separate real and fake batch-norm
passes in D, the penalty on train-mode D with target norm 1, constant noise); a change of those
defaults is meant to fail here.

Cost: three compiled train steps (two igan configs, one igan_v2) and the hand computation's
programs, on tiny models (G ~10k parameters, D ~1k); compilation is nearly all of it.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tiny_config
from igan_jax import compile_options, train
from igan_jax.config import apply_variant, validate

ALPHA, BETA = 0.7, 0.2          # real / fake targets, deliberately unlike each other and 0.9/0.1
LAMBDA = 5.0
D_LR, G_LR = 0.002, 0.003       # G_LR written out: 1.5 × D_LR, not read from the schedule
B1, B2, ADAM_EPS = 0.5, 0.999, 1e-8
BATCH, Z_DIM = 4, 8
# float32 losses recomputed along another path (other fusions, other summation order).
LOSS_TOL = dict(rtol=1e-5, atol=1e-6)


def _config(**overrides):
  base = {"model.channels": 4, "model.d_widths": (4,), "model.z_dim": Z_DIM,
          "batch_size": BATCH, "n_critic": 2, "loss.noise_std": 0.0,
          "loss.real_label": ALPHA, "loss.fake_label": BETA, "loss.gp_weight": LAMBDA,
          "optim.d_init_lr": D_LR, "optim.g_lr_ratio": 1.5, "optim.b1": B1, "optim.b2": B2,
          "optim.eps": ADAM_EPS}
  base.update(overrides)
  return tiny_config(**base)


def _images(seed, shape, lo=-1.0, hi=1.0):
  return jnp.asarray(np.random.default_rng(seed).uniform(lo, hi, shape), jnp.float32)


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _flat(tree):
  return np.concatenate([x.ravel() for x in _leaves(tree)])


def _trees_close(a, b, rtol, atol):
  return all(np.allclose(x, y, rtol=rtol, atol=atol) for x, y in zip(_leaves(a), _leaves(b)))


def _assert_trees_close(a, b, rtol, atol):
  for x, y in zip(_leaves(a), _leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------
# The hand computation. Everything numeric (targets, λ, noise std, learning rates) is an
# argument, not part of the compiled program, so one compilation serves every config here. It
# runs a few times, so only its compile time counts: XLA's lowest backend optimisation level
# halves that on XLA:CPU and changes results only by rounding.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _jit(fun):
  return jax.jit(fun, compiler_options=_FAST_COMPILE if compile_options.supported(_FAST_COMPILE)
                 else None)


class Hand:
  """One paper iteration at step 0, written out from the models' apply functions."""

  def __init__(self, state):
    d_apply, g_apply = state.d.apply_fn, state.g.apply_fn

    def d_train(params, stats, x):
      out, mut = d_apply({"params": params, "batch_stats": stats}, x, train=True,
                         mutable=["batch_stats"])
      return out, mut["batch_stats"]

    def g_train(params, stats, z, key):
      out, mut = g_apply({"params": params, "batch_stats": stats}, z, train=True,
                         rngs={"dropout": key}, mutable=["batch_stats"])
      return out, mut["batch_stats"]

    def critic(d_params, d_stats, g_vars, real, key, alpha, beta, lam, std):
      k_z, k_drop, k_nr, k_nf, k_eps = jax.random.split(key, 5)
      z = jax.random.normal(k_z, (real.shape[0], Z_DIM), jnp.float32)
      fake, _ = g_train(g_vars["params"], g_vars["batch_stats"], z, k_drop)
      real_n = real + std * jax.random.normal(k_nr, real.shape, jnp.float32)
      fake_n = fake + std * jax.random.normal(k_nf, fake.shape, jnp.float32)
      eps = jax.random.uniform(k_eps, (real.shape[0], 1, 1, 1), jnp.float32)
      x_hat = eps * real_n + (1.0 - eps) * fake_n

      def loss(p):
        r, stats = d_train(p, d_stats, real_n)
        f, stats = d_train(p, stats, fake_n)
        adv = jnp.mean((r - alpha) ** 2) + jnp.mean((f - beta) ** 2)
        # ∇ of the batch's summed output: with train-mode batch norm the samples interact, and
        # this is the quantity the penalty is defined on (losses.gradient_penalty's docstring).
        gx = jax.grad(lambda x: jnp.sum(d_train(p, stats, x)[0]))(x_hat)
        gp = jnp.mean((jnp.sqrt(jnp.sum(gx ** 2, axis=(1, 2, 3))) - 1.0) ** 2)
        return adv + lam * gp, (adv, gp, stats)

      (total, (adv, gp, stats)), grads = jax.value_and_grad(loss, has_aux=True)(d_params)
      return dict(d_loss=total, d_adv=adv, gp=gp), grads, stats

    def generator(g_params, g_stats, d_vars, key, alpha, std):
      k_z, k_drop, k_n = jax.random.split(key, 3)
      z = jax.random.normal(k_z, (BATCH, Z_DIM), jnp.float32)

      def loss(p):
        fake, stats = g_train(p, g_stats, z, k_drop)
        x = fake + std * jax.random.normal(k_n, fake.shape, jnp.float32)
        logits, _ = d_train(d_vars["params"], d_vars["batch_stats"], x)
        return jnp.mean((logits - alpha) ** 2), stats

      (g_loss, stats), grads = jax.value_and_grad(loss, has_aux=True)(g_params)
      return g_loss, grads, stats

    def adam(params, mu, nu, grads, t, lr):
      """Adam step t (1-based) written out: (params, mu, nu, unit step m̂/(√v̂ + eps))."""
      mu = jax.tree_util.tree_map(lambda m, g: B1 * m + (1 - B1) * g, mu, grads)
      nu = jax.tree_util.tree_map(lambda v, g: B2 * v + (1 - B2) * g * g, nu, grads)
      unit = jax.tree_util.tree_map(
          lambda m, v: (m / (1 - B1 ** t)) / (jnp.sqrt(v / (1 - B2 ** t)) + ADAM_EPS), mu, nu)
      return jax.tree_util.tree_map(lambda p, u: p - lr * u, params, unit), mu, nu, unit

    self._critic, self._generator, self._adam = _jit(critic), _jit(generator), _jit(adam)

  def step(self, state, batches, alpha=ALPHA, beta=BETA, lam=LAMBDA, std=0.0,
           g_target=None):
    """The iteration on `batches` (a sequence of (B, H, W, C) critic batches)."""
    assert int(state.step) == 0 and int(state.d.step) == 0 and int(state.g.step) == 0
    key = jax.random.fold_in(state.rng, 0)
    critic_key, gen_key = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
    g_vars = {"params": state.g.params, "batch_stats": state.g.batch_stats}
    d_params, d_stats = state.d.params, state.d.batch_stats
    mu = nu = jax.tree_util.tree_map(np.zeros_like, d_params)
    out = dict(critic=[], d_grads=[], d_units=[])
    for i, real in enumerate(batches):
      m, grads, d_stats = self._critic(d_params, d_stats, g_vars, real,
                                       jax.random.fold_in(critic_key, i), alpha, beta, lam, std)
      d_params, mu, nu, unit = self._adam(d_params, mu, nu, grads, i + 1, D_LR)
      out["critic"].append({k: float(v) for k, v in m.items()})
      out["d_grads"].append(grads)
      out["d_units"].append(unit)
    out["d_params"], out["d_stats"] = d_params, d_stats
    g_loss, g_grads, g_stats = self._generator(
        state.g.params, state.g.batch_stats, {"params": d_params, "batch_stats": d_stats},
        gen_key, alpha if g_target is None else g_target, std)
    g_zeros = jax.tree_util.tree_map(np.zeros_like, state.g.params)
    out["g_params"], _, _, out["g_unit"] = self._adam(state.g.params, g_zeros, g_zeros, g_grads,
                                                      1, G_LR)
    out["g_loss"], out["g_grads"], out["g_stats"] = float(g_loss), g_grads, g_stats
    # The step reports means over its critic updates.
    for k in ("d_loss", "d_adv", "gp"):
      out[k] = float(np.mean([m[k] for m in out["critic"]]))
    return out


@pytest.fixture(scope="module")
def base():
  """The reference iteration: noise 0, λ = 5, two critic batches that differ clearly."""
  config = _config()
  state = train.create_train_state(config, jax.random.PRNGKey(3))
  real = jnp.stack([_images(10, (BATCH, 28, 28, 1)), _images(11, (BATCH, 28, 28, 1), -0.5, 1.0)])
  new, metrics = train.train_step(state, real)
  hand = Hand(state)
  return dict(config=config, state=state, real=real, new=new,
              metrics={k: float(v) for k, v in metrics.items()}, hand=hand,
              want=hand.step(state, list(real)))


# ---------------------------------------------------------------------------------------------


def test_critic_losses_match_hand_computation(base):
  """d_adv = mean((D(real) − α)²) + mean((D(fake) − β)²); gp = E[(‖∇D(x̂)‖ − 1)²];
  d_loss = d_adv + λ·gp; each a mean over the two critic updates."""
  got, want = base["metrics"], base["want"]
  assert want["gp"] > 0.01  # else the λ term could not show in d_loss
  for k in ("d_adv", "gp", "d_loss"):
    np.testing.assert_allclose(got[k], want[k], err_msg=k, **LOSS_TOL)
  np.testing.assert_allclose(got["d_loss"], got["d_adv"] + LAMBDA * got["gp"], **LOSS_TOL)
  # Near misses: α and β swapped; λ dropped.
  swapped = base["hand"].step(base["state"], list(base["real"]), alpha=BETA, beta=ALPHA)
  assert not np.isclose(got["d_adv"], swapped["d_adv"], **LOSS_TOL)
  assert not np.isclose(got["d_loss"], want["d_adv"], **LOSS_TOL)


def test_each_critic_update_sees_its_own_batch(base):
  """Update i trains on real[i]: D after the step = two hand updates on real[0] then real[1]."""
  state, real, new, hand = base["state"], base["real"], base["new"], base["hand"]
  want = base["want"]
  # Absolute: Adam steps are ±lr-sized whatever the parameter's size; 1e-6 = lr / 2000 (the two
  # paths agreed to 6e-8; a wrong batch moves parameters by ~lr).
  _assert_trees_close(new.d.params, want["d_params"], rtol=0, atol=1e-6)
  _assert_trees_close(new.d.batch_stats, want["d_stats"], rtol=1e-5, atol=1e-6)
  twice = hand.step(state, [real[0], real[0]])
  assert not _trees_close(new.d.params, twice["d_params"], rtol=0, atol=1e-6)
  assert not _trees_close(new.d.batch_stats, twice["d_stats"], rtol=1e-5, atol=1e-6)
  # Either batch changed alone changes the iteration.
  other = _images(12, real.shape[1:])
  for i in (0, 1):
    changed, m = train.train_step(state, real.at[i].set(other))
    assert not _trees_close(new.d.params, changed.d.params, rtol=0, atol=1e-6), i
    assert not np.isclose(float(m["d_adv"]), base["metrics"]["d_adv"], **LOSS_TOL), i


def test_generator_target_is_alpha(base):
  """g_loss = mean((D(G(z)) − α)²), D the discriminator after the critic updates (flipped
  labels: the fakes are pushed toward the real target)."""
  got, want = base["metrics"]["g_loss"], base["want"]["g_loss"]
  np.testing.assert_allclose(got, want, **LOSS_TOL)
  toward_beta = base["hand"].step(base["state"], list(base["real"]), g_target=BETA)
  assert not np.isclose(got, toward_beta["g_loss"], **LOSS_TOL)
  # The initial D in its place: the generator must see the critic's updated weights.
  initial_d = base["hand"]._generator(
      base["state"].g.params, base["state"].g.batch_stats,
      {"params": base["state"].d.params, "batch_stats": base["state"].d.batch_stats},
      jax.random.fold_in(jax.random.fold_in(base["state"].rng, 0), 2), ALPHA, 0.0)[0]
  assert not np.isclose(got, float(initial_d), **LOSS_TOL)


def test_generator_statistics_come_from_its_own_update(base):
  """G's batch statistics after the step are those of the generator update's pass alone: the
  critic updates' G passes are discarded."""
  _assert_trees_close(base["new"].g.batch_stats, base["want"]["g_stats"], rtol=1e-5, atol=1e-6)
  assert not _trees_close(base["new"].g.batch_stats, base["state"].g.batch_stats,
                          rtol=1e-5, atol=1e-6)


def test_learning_rates_applied(base):
  """The rates the optimisers applied at step 0, read off the parameter changes: D 0.002 on
  each critic update, G 0.003 = 1.5 × 0.002 (written out, not the schedule times 1.5)."""
  state, new, want = base["state"], base["new"], base["want"]
  # G: one Adam step, m̂ = g and v̂ = g², so Δ = −lr·g/(|g| + eps) ≈ −lr·sign(g).
  g = _flat(want["g_grads"])
  delta = _flat(new.g.params) - _flat(state.g.params)
  big = np.abs(g) > 1e-3  # eps/|g| ≤ 1e-5
  assert big.mean() > 0.5
  # |Δ| carries the rounding of param + Δ: ~1 ulp of a parameter of size ~1, 4e-5 of lr.
  np.testing.assert_allclose(np.abs(delta[big]), G_LR, rtol=1e-4)
  np.testing.assert_array_equal(np.sign(delta[big]), -np.sign(g[big]))
  # D: two Adam steps, Δ = −lr₁·u₁ − lr₂·u₂ with u_t the unit steps m̂/(√v̂ + eps) from the
  # hand gradients; least squares over all parameters gives lr₁ and lr₂ (the schedule is fed
  # the iteration, count // n_critic, so both are the step-0 rate).
  u1, u2 = _flat(want["d_units"][0]), _flat(want["d_units"][1])
  d_delta = _flat(new.d.params) - _flat(state.d.params)
  (lr1, lr2), *_ = np.linalg.lstsq(-np.stack([u1, u2], 1).astype(np.float64),
                                   d_delta.astype(np.float64), rcond=None)
  # Recovered to ~5e-7; feeding the schedule Adam's count (not the iteration) would give
  # lr₂ = lr(1) = 0.0019988, 6e-4 off.
  np.testing.assert_allclose([lr1, lr2], [D_LR, D_LR], rtol=2e-5)


ALT_NOISE, ALT_LAMBDA = 0.3, 2.0


@pytest.fixture(scope="module")
def alt(base):
  """One critic update (n_critic = 1, on real[0]) with instance noise 0.3 and λ = 2: one more
  compiled step serves both the noise test and the λ test."""
  config = _config(**{"n_critic": 1, "loss.noise_std": ALT_NOISE,
                      "loss.gp_weight": ALT_LAMBDA})
  state = train.create_train_state(config, jax.random.PRNGKey(3))
  # The reference state's twin: the seed decides the networks, not the loss settings.
  for x, y in zip(_leaves(state), _leaves(base["state"]), strict=True):
    np.testing.assert_array_equal(x, y)
  new, metrics = train.train_step(state, base["real"][:1])
  return dict(new=new, metrics={k: float(v) for k, v in metrics.items()},
              hand=lambda **kw: base["hand"].step(state, [base["real"][0]], **kw))


def test_instance_noise_applied(alt):
  """With noise_std > 0 the real and fake D inputs and G's fakes in its own update get
  N(0, std²) noise, each from its own key: the metrics match the hand computation with that
  noise, and differ from the one without."""
  got = alt["metrics"]
  want, clean = alt["hand"](std=ALT_NOISE, lam=ALT_LAMBDA), alt["hand"](lam=ALT_LAMBDA)
  for k in ("d_adv", "gp", "d_loss", "g_loss"):
    np.testing.assert_allclose(got[k], want[k], err_msg=k, **LOSS_TOL)
    assert not np.isclose(got[k], clean[k], **LOSS_TOL), k


def test_gradient_penalty_weight_applied(alt):
  """λ = 2 instead of 5 on the same first update: d_adv and gp unchanged, d_loss lower by
  exactly 3·gp, and D's update is the one of λ = 2."""
  got, new = alt["metrics"], alt["new"]
  want = alt["hand"](std=ALT_NOISE, lam=ALT_LAMBDA)
  with_5 = alt["hand"](std=ALT_NOISE, lam=LAMBDA)
  assert with_5["gp"] > 0.01  # else λ could not show
  np.testing.assert_allclose(got["d_adv"], with_5["d_adv"], **LOSS_TOL)
  np.testing.assert_allclose(got["gp"], with_5["gp"], **LOSS_TOL)
  np.testing.assert_allclose(got["d_loss"],
                             with_5["d_loss"] - (LAMBDA - ALT_LAMBDA) * got["gp"], **LOSS_TOL)
  np.testing.assert_allclose(got["d_loss"], got["d_adv"] + ALT_LAMBDA * got["gp"], **LOSS_TOL)
  _assert_trees_close(new.d.params, want["d_params"], rtol=0, atol=1e-6)
  assert not _trees_close(new.d.params, with_5["d_params"], rtol=0, atol=1e-6)


def test_igan_v2_discriminators_see_only_their_class():
  """Class-stacked D (leading class axis on every leaf): changing class 1's real images leaves
  discriminator 0's parameters and batch statistics bit-identical, and moves discriminator 1's."""
  config = apply_variant(_config(**{"n_critic": 1, "loss.noise_std": 0.1}), "igan_v2")
  config.model.class_stack = "unroll"
  config = validate(config)
  state = train.create_train_state(config, jax.random.PRNGKey(5))
  real = jnp.stack([_images(20, (BATCH, 28, 28, 1)), _images(21, (BATCH, 28, 28, 1))])[None]
  a, _ = train.train_step(state, real)
  b, _ = train.train_step(state, real.at[0, 1].set(_images(22, (BATCH, 28, 28, 1))))
  for tree_a, tree_b in ((a.d.params, b.d.params), (a.d.batch_stats, b.d.batch_stats)):
    moved = False
    for x, y in zip(_leaves(tree_a), _leaves(tree_b), strict=True):
      assert x.shape[0] == 2  # the class axis
      np.testing.assert_array_equal(x[0], y[0])
      moved |= not np.array_equal(x[1], y[1])
    assert moved
