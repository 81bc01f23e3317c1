"""Generator / discriminator shapes at 28 and 96, the layer identities, parameter counts."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from igan_jax import models
from igan_jax.models import layers


class LayersTest(absltest.TestCase):

  def test_patch_upsample_equals_transposed_conv(self):
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 3, 5))
    ours = layers.PatchUpsample(4, 3)
    v = ours.init(jax.random.PRNGKey(1), x)
    ref = nn.ConvTranspose(4, (3, 3), strides=(3, 3), padding="VALID")
    # Same weights: Dense kernel (Cin, r·r·Cout) ordered (r, r, Cout) → HWIO (r, r, Cin, Cout).
    # Flax's ConvTranspose (transpose_kernel=False) correlates over the dilated input, so its
    # taps are the spatial flip of the patch layout.
    k = v["params"]["kernel"]["kernel"].reshape(5, 3, 3, 4).transpose(1, 2, 0, 3)[::-1, ::-1]
    rv = {"params": {"kernel": k, "bias": v["params"]["bias"] + 0.5}}
    v["params"]["bias"] = v["params"]["bias"] + 0.5
    np.testing.assert_allclose(ours.apply(v, x), ref.apply(rv, x), rtol=1e-5, atol=1e-5)
    self.assertEqual(ours.apply(v, x).shape, (2, 9, 9, 4))

  def test_pixel_shuffle_moves_channels_to_space(self):
    x = jnp.arange(2 * 2 * 2 * 8, dtype=jnp.float32).reshape(2, 2, 2, 8)
    y = layers.pixel_shuffle(x, 2)
    self.assertEqual(y.shape, (2, 4, 4, 2))
    np.testing.assert_array_equal(y[0, 0:2, 0:2, 0], x[0, 0, 0, 0::2].reshape(2, 2))
    self.assertEqual(sorted(np.asarray(y).ravel().tolist()), sorted(np.asarray(x).ravel().tolist()))

  def test_strided_conv_is_nn_conv_with_stride_2(self):
    # Same parameters (names, shapes), same outputs, same first- and second-order gradients
    # (the gradient penalty differentiates the input gradient again) as nn.Conv(strides=2),
    # for even and odd sizes, odd and even kernels, SAME / VALID / explicit padding.
    cases = [(14, 3, "SAME", 1), (7, 3, "SAME", 4), (13, 5, "SAME", 3),
             (9, 4, ((1, 1), (1, 1)), 2), (10, 3, ((2, 0), (0, 3)), 2)]
    for size, k, padding, cin in cases:
      with self.subTest(size=size, k=k, padding=padding):
        x = jax.random.normal(jax.random.PRNGKey(size), (2, size, size + 1, cin))
        ref = nn.Conv(5, (k, k), strides=(2, 2), padding=padding)
        ours = layers.StridedConv(5, (k, k), padding=padding)
        v = ref.init(jax.random.PRNGKey(1), x)
        v = jax.tree_util.tree_map(lambda a: a + 0.1, v)  # a non-zero bias too
        self.assertEqual(jax.tree_util.tree_structure(ours.init(jax.random.PRNGKey(1), x)),
                         jax.tree_util.tree_structure(v))
        np.testing.assert_allclose(ours.apply(v, x), ref.apply(v, x), rtol=1e-5, atol=1e-5)

        def penalty(layer):
          def f(params, x):
            g = jax.grad(lambda x: jnp.sum(jnp.tanh(layer.apply({"params": params}, x))))(x)
            return jnp.sum(g ** 2)
          return jax.jit(jax.grad(f, argnums=(0, 1)))
        got, want = penalty(ours)(v["params"], x), penalty(ref)(v["params"], x)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
          np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)

  def test_stride2_conv_transpose_is_nn_conv_transpose(self):
    # DCGAN's 5×5 layer and other kernel sizes: same parameters, outputs and gradients.
    for size, k in [(7, 5), (3, 3), (4, 4), (5, 1)]:
      with self.subTest(size=size, k=k):
        x = jax.random.normal(jax.random.PRNGKey(size), (2, size, size + 1, 3))
        ref = nn.ConvTranspose(4, (k, k), strides=(2, 2), padding="SAME")
        ours = layers.Stride2ConvTranspose(4, (k, k))
        v = jax.tree_util.tree_map(lambda a: a + 0.1, ref.init(jax.random.PRNGKey(1), x))
        self.assertEqual(jax.tree_util.tree_structure(ours.init(jax.random.PRNGKey(1), x)),
                         jax.tree_util.tree_structure(v))
        np.testing.assert_allclose(ours.apply(v, x), ref.apply(v, x), rtol=1e-5, atol=1e-5)
        grad = lambda layer: jax.jit(jax.grad(
            lambda v, x: jnp.sum(jnp.sin(layer.apply(v, x))), argnums=(0, 1)))
        for a, b in zip(jax.tree_util.tree_leaves(grad(ours)(v, x)),
                        jax.tree_util.tree_leaves(grad(ref)(v, x))):
          np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)

  def test_discriminator_parameters_keep_their_names(self):
    # Checkpoints of the plain-conv discriminator restore into the StridedConv one.
    d = models.ResidualDiscriminator(widths=(8, 16))
    v = d.init(jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)))
    self.assertEqual(set(v["params"]["down0"]), {"Conv_0", "BatchNorm_0"})
    self.assertEqual(set(v["params"]["down0"]["Conv_0"]), {"kernel"})
    self.assertEqual(v["params"]["down1"]["Conv_0"]["kernel"].shape, (3, 3, 8, 16))
    plain = models.ResidualDiscriminator(widths=(8, 16), space_to_depth=False)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 28, 28, 1))
    pv = plain.init(jax.random.PRNGKey(0), x)
    self.assertEqual(jax.tree_util.tree_structure(pv), jax.tree_util.tree_structure(v))
    np.testing.assert_allclose(d.apply(pv, x, train=True, mutable=["batch_stats"])[0],
                               plain.apply(pv, x, train=True, mutable=["batch_stats"])[0],
                               rtol=1e-5, atol=1e-5)

  def test_dropout_keeps_and_scales_like_nn_dropout(self):
    x = jnp.ones((64, 28, 28, 16))
    drop = jax.jit(lambda x, key: layers.Dropout(0.2).apply({}, x, rngs={"dropout": key}))
    y = np.asarray(drop(x, jax.random.PRNGKey(0)))
    self.assertEqual(set(np.unique(y).tolist()), {0.0, 1.25})  # kept units scaled by 1/0.8
    n = y.size
    kept = float(np.mean(y > 0))
    self.assertLess(abs(kept - 0.8), 5 * np.sqrt(0.8 * 0.2 / n))  # binomial, 5 sd
    np.testing.assert_array_equal(y, drop(x, jax.random.PRNGKey(0)))  # deterministic per key
    other = np.asarray(drop(x, jax.random.PRNGKey(1)))
    agree = float(np.mean((y > 0) == (other > 0)))  # independent masks: 0.8² + 0.2²
    self.assertLess(abs(agree - 0.68), 0.01)
    typed = layers.Dropout(0.2).apply({}, x, rngs={"dropout": jax.random.key(0)})
    self.assertLess(abs(float(jnp.mean(typed > 0)) - 0.8), 0.01)
    for layer in (layers.Dropout(0.2, deterministic=True), layers.Dropout(0.0)):
      np.testing.assert_array_equal(layer.apply({}, x, rngs={"dropout": jax.random.PRNGKey(0)}),
                                    x)
    np.testing.assert_array_equal(
        layers.Dropout(1.0).apply({}, x, rngs={"dropout": jax.random.PRNGKey(0)}), 0 * x)

  def test_unknown_norm(self):
    with self.assertRaises(ValueError):
      layers.make_norm("group", True, 0.9, 1e-5)


class ShapesTest(parameterized.TestCase):

  @parameterized.parameters((28, 1), (96, 3), (96, 1))
  def test_generator(self, res, ch):
    g = models.IGANGenerator(resolution=res, out_channels=ch, channels=8)
    z = jax.random.normal(jax.random.PRNGKey(0), (3, 100))
    v = g.init(jax.random.PRNGKey(1), z)
    out, mut = g.apply(v, z, train=True, rngs={"dropout": jax.random.PRNGKey(2)},
                       mutable=["batch_stats"])
    self.assertEqual(out.shape, (3, res, res, ch))
    self.assertTrue(np.all(np.abs(out) <= 1.0))
    self.assertIn("shortcut", v["params"])
    self.assertIn("branch", v["params"])
    # The 4→96 (or 7→28) shortcut is one patch upsample with kernel = stride = res / base.
    base = models.TOPOLOGY[res]["base"]
    self.assertEqual(v["params"]["shortcut"]["kernel"]["kernel"].shape,
                     (8, (res // base) ** 2 * 8))
    self.assertEqual(g.apply(v, z, train=False).shape, (3, res, res, ch))

  def test_generator_dense_stems_match_paper_at_96(self):
    g = models.IGANGenerator(resolution=96, out_channels=3)
    v = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(1), jnp.zeros((1, 100))))  # shapes only
    self.assertEqual(v["params"]["fc_base"]["kernel"].shape, (100, 4 * 4 * 64))
    self.assertEqual(v["params"]["fc_branch"]["kernel"].shape, (100, 24 * 24 * 64))

  def test_unsupported_resolution(self):
    g = models.IGANGenerator(resolution=64)
    with self.assertRaisesRegex(ValueError, "28, 96"):
      g.init(jax.random.PRNGKey(0), jnp.zeros((1, 100)))

  @parameterized.product(res=(28, 96), norm=("batch", "layer", "none"))
  def test_discriminator(self, res, norm):
    d = models.ResidualDiscriminator(widths=(8, 16), norm=norm)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, res, res, 3))
    v = d.init(jax.random.PRNGKey(1), x)
    out, _ = d.apply(v, x, train=True, mutable=["batch_stats"])
    self.assertEqual(out.shape, (3,))
    self.assertEqual("batch_stats" in v, norm == "batch")

  def test_param_count(self):
    self.assertEqual(models.param_count({"a": jnp.zeros((3, 4)), "b": [jnp.zeros(5)]}), 17)


if __name__ == "__main__":
  absltest.main()


class SubPixelConvTransposeTest(absltest.TestCase):

  def test_equals_pytorch_transposed_conv_definition(self):
    # PyTorch ConvTranspose2d(k=3, s=2, p=1, output_padding=1):
    #   y[o] = Σ_i x[i] · w[o − 2i + 1]  for 0 ≤ o − 2i + 1 < 3, per spatial axis.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    layer = layers.SubPixelConvTranspose(6, use_bias=False)
    v = layer.init(jax.random.PRNGKey(0), jnp.asarray(x))
    w = np.asarray(v["params"]["kernel"])  # (3, 3, Cin, Cout)
    want = np.zeros((2, 6, 8, 6), np.float64)
    for oh in range(6):
      for ow in range(8):
        for ih in range(3):
          for iw in range(4):
            kh, kw = oh - 2 * ih + 1, ow - 2 * iw + 1
            if 0 <= kh < 3 and 0 <= kw < 3:
              want[:, oh, ow] += x[:, ih, iw] @ w[kh, kw]
    got = layer.apply(v, jnp.asarray(x))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_config_lists_match_the_models():
  # config.py keeps copies so that config errors are reported before Flax is imported.
  from igan_jax import config, models
  assert config.MODELS == models.MODELS
  assert config.RESOLUTIONS == tuple(models.supported_resolutions())
