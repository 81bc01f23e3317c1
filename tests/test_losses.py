"""Losses against hand-computed values; the gradient penalty against finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from igan_jax import losses

jax.config.update("jax_enable_x64", False)


class AdversarialLossTest(absltest.TestCase):

  def test_least_squares_by_hand(self):
    real, fake = jnp.array([1.0, 0.5]), jnp.array([0.0, -1.0])
    # D: mean((1-.9)², (.5-.9)²) + mean((0-.1)², (-1-.1)²) = (0.01+0.16)/2 + (0.01+1.21)/2
    np.testing.assert_allclose(losses.least_squares_d(real, fake, 0.9, 0.1), 0.085 + 0.61,
                               rtol=1e-6)
    # G with flipped labels: fakes against α: ((0-.9)² + (-1-.9)²)/2 = (0.81 + 3.61)/2
    np.testing.assert_allclose(losses.least_squares_g(fake, 0.9), 2.21, rtol=1e-6)

  def test_bce_by_hand(self):
    x, t = 0.3, 0.9
    p = 1 / (1 + np.exp(-x))
    expected = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    np.testing.assert_allclose(losses.bce_g(jnp.array([x]), t), expected, rtol=1e-5)
    expected_d = expected + -(0.1 * np.log(p) + 0.9 * np.log(1 - p))
    np.testing.assert_allclose(losses.bce_d(jnp.array([x]), jnp.array([x]), 0.9, 0.1),
                               expected_d, rtol=1e-5)

  def test_wasserstein(self):
    real, fake = jnp.array([2.0, 4.0]), jnp.array([1.0, -1.0])
    np.testing.assert_allclose(losses.wasserstein_d(real, fake), 0.0 - 3.0)
    np.testing.assert_allclose(losses.wasserstein_g(fake), -0.0)

  def test_unknown_loss(self):
    with self.assertRaisesRegex(ValueError, "least_squares"):
      losses.get_losses("hinge2")


class GradientPenaltyTest(absltest.TestCase):

  def test_matches_finite_differences(self):
    # A small nonlinear "discriminator": per-sample, so the input gradient is per-sample.
    w = jax.random.normal(jax.random.PRNGKey(1), (12,))
    d_fn = lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w) * 3.0
    x = jax.random.normal(jax.random.PRNGKey(2), (3, 2, 2, 3))
    gp, norms = losses.gradient_penalty(d_fn, x)
    h = 1e-3
    xs = np.asarray(x, np.float64)
    wn = np.asarray(w, np.float64)
    f = lambda v: np.tanh(v.reshape(-1) @ wn) * 3.0
    fd_norms = []
    for i in range(3):
      g = np.zeros(12)
      for j in range(12):
        e = np.zeros(12)
        e[j] = h
        g[j] = (f(xs[i].reshape(-1) + e) - f(xs[i].reshape(-1) - e)) / (2 * h)
      fd_norms.append(np.linalg.norm(g))
    fd_norms = np.array(fd_norms)
    np.testing.assert_allclose(norms, fd_norms, rtol=1e-3)
    np.testing.assert_allclose(gp, np.mean((fd_norms - 1) ** 2), rtol=2e-3)

  def test_linear_critic_with_unit_gradient_has_zero_penalty(self):
    w = jnp.zeros((8,)).at[0].set(1.0)  # ‖∇‖ = 1 everywhere
    gp, _ = losses.gradient_penalty(lambda x: x.reshape(x.shape[0], -1) @ w,
                                    jnp.ones((5, 2, 2, 2)))
    self.assertAlmostEqual(float(gp), 0.0, places=6)

  def test_penalty_is_differentiable_in_parameters(self):
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 1, 2, 3))  # images: (B, H, W, C)
    def penalty(w):
      return losses.gradient_penalty(lambda v: jnp.sin(v.reshape(4, -1) @ w), x)[0]
    w = jax.random.normal(jax.random.PRNGKey(3), (6,))
    g = jax.grad(penalty)(w)
    e = jnp.zeros(6).at[2].set(1e-3)
    fd = (penalty(w + e) - penalty(w - e)) / 2e-3
    np.testing.assert_allclose(g[2], fd, rtol=2e-2, atol=1e-4)

  def test_class_stacked_images_get_per_image_eps_and_norms(self):
    # (N, B, H, W, C) inputs, as the class-stacked models give: one ε and one norm per image.
    real, fake = jnp.ones((3, 5, 2, 2, 1)), jnp.zeros((3, 5, 2, 2, 1))
    x_hat = losses.interpolate(jax.random.PRNGKey(0), real, fake)
    self.assertEqual(len(np.unique(np.asarray(x_hat)[..., 0, 0, 0])), 15)
    _, norms = losses.gradient_penalty(lambda v: jnp.sum(v, axis=(-3, -2, -1)), x_hat)
    np.testing.assert_allclose(norms, np.full((3, 5), 2.0), rtol=1e-5)  # ‖1‖ over 4 pixels

  def test_interpolation_per_sample_eps(self):
    real, fake = jnp.ones((64, 2, 2, 1)), jnp.zeros((64, 2, 2, 1))
    x_hat = losses.interpolate(jax.random.PRNGKey(0), real, fake)
    per_sample = np.asarray(x_hat).reshape(64, -1)
    self.assertTrue(np.all(per_sample.min(1) == per_sample.max(1)))  # one ε per sample
    self.assertGreater(per_sample[:, 0].std(), 0.1)                 # different across samples
    self.assertTrue(np.all((per_sample >= 0) & (per_sample <= 1)))

  def test_instance_noise(self):
    x = jnp.zeros((1000,))
    self.assertIs(losses.add_instance_noise(jax.random.PRNGKey(0), x, 0.0), x)
    y = losses.add_instance_noise(jax.random.PRNGKey(0), x, 0.1)
    self.assertAlmostEqual(float(jnp.std(y)), 0.1, delta=0.01)


if __name__ == "__main__":
  absltest.main()
