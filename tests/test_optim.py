"""The decay schedule (jitted, against the formula) and the two Adam chains."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest

from igan_jax import optim
from igan_jax.config import base_config


class IganDecayTest(absltest.TestCase):

  def test_values_jitted(self):
    sched = jax.jit(optim.igan_decay(0.002, 0.0002, 0.5, 1000))
    for t, want in [(0, 0.002), (1000, 0.0002 + 0.0009), (2000, 0.0002 + 0.00045),
                    (500, 0.0002 + 0.0018 * 0.5 ** 0.5)]:
      np.testing.assert_allclose(sched(t), want, rtol=1e-6)
    np.testing.assert_allclose(sched(10**6), 0.0002, rtol=1e-6)

  def test_monotone_and_bounded(self):
    sched = optim.igan_decay(0.002, 0.0002, 0.9, 100)
    v = np.asarray(jax.vmap(sched)(jnp.arange(0, 5000, 7)))
    self.assertTrue(np.all(np.diff(v) <= 0))
    self.assertTrue(np.all((v >= 0.0002 - 1e-9) & (v <= 0.002 + 1e-9)))

  def test_bad_parameters(self):
    with self.assertRaises(ValueError):
      optim.igan_decay(0.002, 0.0002, 1.5, 100)
    with self.assertRaises(ValueError):
      optim.igan_decay(0.002, 0.0002, 0.5, 0)

  def test_generator_gets_one_and_a_half_times(self):
    d, g = optim.schedules(base_config().optim)
    for t in (0, 123, 4000):
      np.testing.assert_allclose(g(t), 1.5 * d(t), rtol=1e-6)

  def test_discriminator_schedule_counts_iterations_not_updates(self):
    cfg = base_config().optim
    cfg.d_init_lr, cfg.d_end_lr, cfg.decay_steps = 1.0, 0.0, 1
    d_tx, g_tx = optim.make_optimizers(cfg, n_critic=3)
    # With Adam's first update the step is ±lr (sign of the gradient): read lr off the update.
    params = jnp.zeros(())
    st = d_tx.init(params)
    lrs = []
    for _ in range(7):
      u, st = d_tx.update(jnp.ones(()), st)
      lrs.append(-float(u))
    lr_t = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]  # gamma^(t) for t = count // 3
    np.testing.assert_allclose(np.array(lrs) / np.array(lr_t), 1.0, rtol=1e-3)


if __name__ == "__main__":
  absltest.main()
