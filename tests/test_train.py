"""One training step on small shapes, train_steps, generate, EMA, bit-exact resume, and the
baseline recipes' steps.

Compiling is nearly all of the cost: every test of the step shares one state (with EMA, so that
its compiled train_step and train_steps serve the EMA test and the resume test too)."""
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

import igan_jax
from helpers import ROOT, assert_trees_equal, tiny_config
from igan_jax import checkpoint, compile_options, train

EMA = 0.5


def _images(n=32, res=28, ch=1, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (n, res, res, ch), np.uint8))


class TrainStepTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.config = tiny_config(ema_decay=EMA)
    cls.state = igan_jax.create_train_state(cls.config, jax.random.PRNGKey(0))

  def test_one_step_updates_everything(self):
    real = jax.random.uniform(jax.random.PRNGKey(1), (2, 4, 28, 28, 1), minval=-1, maxval=1)
    new, metrics = igan_jax.train_step(self.state, real)
    self.assertEqual(int(new.step), 1)
    for k in ("d_loss", "g_loss", "gp", "d_grad_norm", "g_grad_norm"):
      self.assertTrue(np.isfinite(metrics[k]), k)
    self.assertTrue(bool(metrics["finite"]))
    self.assertGreater(float(metrics["gp"]), 0.0)
    # Both networks, their batch statistics and both optimisers moved.
    for old, upd in [(self.state.g.params, new.g.params), (self.state.d.params, new.d.params),
                     (self.state.g.batch_stats, new.g.batch_stats),
                     (self.state.d.batch_stats, new.d.batch_stats)]:
      diffs = [float(jnp.max(jnp.abs(a - b))) for a, b in
               zip(jax.tree_util.tree_leaves(old), jax.tree_util.tree_leaves(upd))]
      self.assertGreater(max(diffs), 0.0)
    self.assertEqual(int(new.d.step), 2)  # n_critic discriminator updates
    self.assertEqual(int(new.g.step), 1)

  def test_step_is_deterministic_and_depends_on_step(self):
    real = jnp.zeros((2, 4, 28, 28, 1))
    a, ma = igan_jax.train_step(self.state, real)
    b, mb = igan_jax.train_step(self.state, real)
    assert_trees_equal(a, b)
    c, mc = igan_jax.train_step(self.state.replace(step=self.state.step + 5), real)
    self.assertNotEqual(float(ma["g_loss"]), float(mc["g_loss"]))

  def test_train_steps_stacks_metrics_and_samples_on_device(self):
    images = _images()
    s, m = igan_jax.train_steps(self.state, images, 3)
    self.assertEqual(int(s.step), 3)
    self.assertEqual(m["g_loss"].shape, (3,))
    np.testing.assert_array_equal(m["step"], [0, 1, 2])
    # Equal, bit for bit, to three train_step calls on the batches sample_real draws, in one
    # compiled function as train_steps compiles them: train_step called on its own is another
    # program, equal only to float rounding (at the tests' -O0, tests/conftest.py, Adam's first
    # steps, ±lr·sign(g), turn that into ~lr where a gradient is near 0).
    step_on_sampled = compile_options.jit(lambda s, x: train.train_step(s, train.sample_real(s, x)))
    s2, ref = self.state, []
    for _ in range(3):
      s2, m2 = step_on_sampled(s2, images)
      ref.append(m2)
    assert_trees_equal(s, s2)
    np.testing.assert_array_equal(m["g_loss"], [r["g_loss"] for r in ref])

  def test_generate(self):
    z = jax.random.normal(jax.random.PRNGKey(0), (5, 100))
    x = igan_jax.generate(self.state, z)
    self.assertEqual(x.shape, (5, 28, 28, 1))
    self.assertTrue(np.all(np.abs(np.asarray(x)) <= 1))
    with self.assertRaises(ValueError):  # a state without an EMA generator
      igan_jax.generate(self.state.replace(g_ema=None), z, use_ema=True)

  def test_ema_generator(self):
    s, _ = igan_jax.train_steps(self.state, _images(), 1)
    want = jax.tree_util.tree_map(lambda a, b: EMA * a + (1 - EMA) * b, self.state.g.params,
                                  s.g.params)
    for x, y in zip(jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(s.g_ema)):
      np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)

  def test_datasets_of_one_image_shape_share_the_compiled_step(self):
    # The models depend on the image shape, not on the dataset's name: MNIST's state (same
    # shape as Fashion-MNIST's, same seed) is the same state and reuses the compiled step
    # without tracing it again (tests/test_experiments.py trains both in one process).
    real = jnp.zeros((2, 4, 28, 28, 1))
    igan_jax.train_step(self.state, real)
    compiled = train.train_step._cache_size()
    mnist = igan_jax.create_train_state(tiny_config("mnist", ema_decay=EMA), jax.random.PRNGKey(0))
    assert_trees_equal(mnist, self.state)
    igan_jax.train_step(mnist, real)
    self.assertEqual(train.train_step._cache_size(), compiled)

  def test_resume_is_bit_exact(self):
    config, images, k = self.config, _images(), 2
    straight, _ = igan_jax.train_steps(igan_jax.create_train_state(config), images, 2 * k)

    half, _ = igan_jax.train_steps(igan_jax.create_train_state(config), images, k)
    ckpt = checkpoint.Checkpointer(tempfile.mkdtemp())
    ckpt.save(half)
    ckpt.wait()
    # A fresh process would rebuild the state from the config, then restore into it.
    restored = ckpt.restore(igan_jax.create_train_state(config))
    ckpt.close()
    self.assertEqual(int(restored.step), k)
    resumed, _ = igan_jax.train_steps(restored, images, k)
    # params, batch stats, opt states, the EMA, step, rng
    assert_trees_equal(straight, resumed)


class BaselineVariantsTest(absltest.TestCase):

  def test_dcgan_and_wgan_gp_recipes_train(self):
    for variant, n_critic, loss in (("dcgan", 1, "bce"), ("wgan_gp", 5, "wasserstein")):
      config = igan_jax.load_config(os.path.join(ROOT, "experiments", "fashion_mnist.py"),
                                    variant)
      self.assertEqual((config.model.name, config.n_critic, config.loss.name),
                       (variant, n_critic, loss))
      # Tiny widths; the recipe (loss, n_critic, optimiser) as the experiment file sets it.
      config.batch_size, config.model.channels, config.model.d_widths = 4, 8, (8, 16)
      state = igan_jax.create_train_state(config)
      state, m = igan_jax.train_steps(state, _images(), 1)
      self.assertTrue(bool(m["finite"][0]), variant)
      self.assertEqual(int(state.d.step), n_critic)


if __name__ == "__main__":
  absltest.main()
