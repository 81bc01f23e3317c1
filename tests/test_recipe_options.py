"""The recipe choices the paper leaves open, each a config value (docs/ablation.md measures them).

Pinned here: what each choice computes — the up-sampler initialisations, the annealed instance
noise, joint vs separate batch norm in the discriminator, the penalty's batch-norm treatment and
centre — that every default reproduces the previous behaviour, and that bad values are refused.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from igan_jax import config as config_lib
from igan_jax import losses, models, report, train
from igan_jax.models import layers
from igan_jax.models.igan import IGANGenerator


def _images(key, shape):
  return jax.random.uniform(jax.random.PRNGKey(key), shape, minval=-1, maxval=1)


# ---------------------------------------------------------------------------------------------
# Up-sampler initialisation


def test_icnr_pixel_shuffle_starts_as_nearest_neighbour_upsampling():
  x = _images(0, (2, 5, 5, 3))
  for r in (2, 3):
    conv = layers.nn.Conv(4 * r * r, (3, 3), kernel_init=layers.icnr(r))
    y = layers.pixel_shuffle(conv.apply(conv.init(jax.random.PRNGKey(1), x), x), r)
    cells = np.asarray(y).reshape(2, 5, r, 5, r, 4)
    # Every r×r cell holds one value per channel: the same as its top-left pixel.
    np.testing.assert_allclose(cells, np.broadcast_to(cells[:, :, :1, :, :1], cells.shape),
                               rtol=0, atol=0)
    plain = layers.nn.Conv(4 * r * r, (3, 3))
    y0 = layers.pixel_shuffle(plain.apply(plain.init(jax.random.PRNGKey(1), x), x), r)
    assert np.abs(np.diff(np.asarray(y0).reshape(2, 5, r, 5, r, 4), axis=2)).max() > 1e-3


def test_icnr_keeps_the_default_scale_and_refuses_bad_shapes():
  w_icnr = layers.icnr(2)(jax.random.PRNGKey(0), (3, 3, 64, 256))
  w_plain = layers.nn.initializers.lecun_normal()(jax.random.PRNGKey(0), (3, 3, 64, 256))
  assert abs(float(jnp.std(w_icnr)) / float(jnp.std(w_plain)) - 1) < 0.1
  with pytest.raises(ValueError, match="multiple of 4"):
    layers.icnr(2)(jax.random.PRNGKey(0), (3, 3, 4, 6))


def test_icnr_patch_upsample_starts_flat_per_patch():
  x = _images(0, (2, 3, 3, 5))
  up = layers.PatchUpsample(4, 4, kernel_init=layers.icnr(4))
  y = np.asarray(up.apply(up.init(jax.random.PRNGKey(1), x), x)).reshape(2, 3, 4, 3, 4, 4)
  np.testing.assert_allclose(y, np.broadcast_to(y[:, :, :1, :, :1], y.shape), rtol=0, atol=0)


def test_bilinear_init_starts_as_bilinear_upsampling():
  x = _images(0, (1, 4, 4, 3))
  ct = layers.SubPixelConvTranspose(2, kernel_init=layers.bilinear_init(), use_bias=False)
  variables = ct.init(jax.random.PRNGKey(1), x)
  y = np.asarray(ct.apply(variables, x))
  w = np.asarray(variables["params"]["kernel"])[1, 1]  # the 1×1 base kernel (centre tap)
  base = np.einsum("bhwc,cd->bhwd", np.asarray(x), w)
  np.testing.assert_allclose(y[:, ::2, ::2], base, rtol=1e-5, atol=1e-6)
  # Odd rows are the mean of their two neighbours (the last one sees a zero beyond the edge).
  np.testing.assert_allclose(y[:, 1:-1:2, ::2], 0.5 * (base[:, :-1] + base[:, 1:]), rtol=1e-5,
                             atol=1e-6)
  with pytest.raises(ValueError, match="3×3"):
    layers.bilinear_init()(jax.random.PRNGKey(0), (5, 5, 2, 2))


def _init_period2_power(variant="igan", **model_values):
  """(params, period-2 power of 64 images) of a fresh 28×28, 16-channel generator of `variant`
  with `model_values`, built from the config as create_train_state builds it (the
  discriminator plays no part here)."""
  c = config_lib.apply_variant(config_lib.base_config(), variant)
  c.model.update(channels=16, **model_values)
  g = models.build_generator(config_lib.validate(c).model, 28, 1)
  z = jax.random.normal(jax.random.PRNGKey(5), (64, 100))
  variables = jax.jit(lambda k: g.init(k, z[:2], train=False))(jax.random.PRNGKey(0))
  x = np.asarray(jax.jit(lambda v: g.apply(v, z, train=False))(variables))
  return variables["params"], report.period2_power(x.reshape(-1, 28, 28))


@pytest.mark.parametrize("name", ["igan", "igan_v2"])
def test_icnr_generator_starts_without_checkerboard(name):
  """At initialisation the default up-samplers put ~10 % of the output power at period 2; with
  upsample_init="icnr" every up-sampler starts smooth (measured: 0.11 vs 0.009 for igan)."""
  p2 = {init: _init_period2_power(name, upsample_init=init, class_stack="unroll")[1]
        for init in ("default", "icnr")}
  assert p2["default"] > 0.05 and p2["icnr"] < 0.03, p2


def test_config_lists_the_choices_the_code_implements():
  """config.py keeps its own copies (a config error is reported before Flax loads)."""
  from igan_jax.models import igan
  assert config_lib.UPSAMPLE_INITS == igan.UPSAMPLE_INITS
  assert config_lib.SKIP_UPSAMPLES == igan.SKIP_UPSAMPLES
  assert config_lib.MAIN_UPSAMPLES == igan.MAIN_UPSAMPLES


def test_default_init_is_unchanged():
  """upsample_init="default" builds the same parameters as before the option existed."""
  z = jnp.zeros((2, 100))
  a = IGANGenerator(resolution=28, out_channels=1).init(jax.random.PRNGKey(0), z)
  b = IGANGenerator(resolution=28, out_channels=1, upsample_init="default").init(
      jax.random.PRNGKey(0), z)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)
  with pytest.raises(ValueError, match="upsample_init"):
    IGANGenerator(resolution=28, out_channels=1, upsample_init="nope").init(
        jax.random.PRNGKey(0), z)


def test_dropout_blocks_reaches_the_generator():
  c = config_lib.base_config()
  c.model.dropout_blocks = 1
  g = models.build_generator(c.model, 28, 1)
  assert g.dropout_blocks == 1
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 100))
  variables = g.init(jax.random.PRNGKey(1), z)

  def out(blocks, key):
    return g.clone(dropout_blocks=blocks).apply(variables, z, train=True,
                                                  rngs={"dropout": jax.random.PRNGKey(key)},
                                                  mutable=["batch_stats"])[0]
  # With no dropout the dropout key does not matter; with dropout it does.
  np.testing.assert_array_equal(out(0, 1), out(0, 2))
  assert not np.allclose(out(1, 1), out(1, 2))


# ---------------------------------------------------------------------------------------------
# Instance noise schedule


def test_noise_scale_is_linear_to_zero_and_jits():
  np.testing.assert_allclose([float(jax.jit(losses.noise_scale, static_argnums=1)(t, 100))
                              for t in (0, 25, 50, 100, 150)], [1, 0.75, 0.5, 0, 0], rtol=1e-6,
                             atol=0)
  assert losses.noise_scale(12345, 0) == 1.0


def test_traced_noise_std_is_applied():
  x = jnp.zeros((2, 4, 4, 1))
  y = jax.jit(lambda s: losses.add_instance_noise(jax.random.PRNGKey(0), x, s))(0.5)
  assert 0.3 < float(jnp.std(y)) < 0.7
  assert losses.add_instance_noise(jax.random.PRNGKey(0), x, 0.0) is x


# ---------------------------------------------------------------------------------------------
# The discriminator's batch norm: joint / separate batches; the penalty's treatment


def _tiny_state(tiny, **overrides):
  """A tiny state with one critic update per step (unless overridden): the step's programs
  compile in about half the time, and the choices tested here act on every critic update
  alike. The same n_critic everywhere lets the tests share their compiled steps."""
  return train.create_train_state(tiny(**{"n_critic": 1, **overrides}))


def test_joint_batch_norm_sees_batch_wide_differences(tiny):
  """Separate batches normalise a batch-wide change of contrast away; a joint batch does not."""
  state = _tiny_state(tiny, **{"loss.d_bn_batch": "joint"})
  real, fake = _images(1, (4, 28, 28, 1)), _images(2, (4, 28, 28, 1))
  d = state.d

  def fake_logits(joint, scale):
    return np.asarray(train._d_logits(d, d.params, real, scale * fake, joint)[1])
  sep = np.abs(fake_logits(False, 0.5) - fake_logits(False, 1.0)).max()
  joint = np.abs(fake_logits(True, 0.5) - fake_logits(True, 1.0)).max()
  assert joint > 20 * sep, (joint, sep)


def test_input_block_without_norm_sees_a_shared_checkerboard():
  """The first reconstruction (batch norm on D's input block, separate batches) is nearly blind
  to a checkerboard all fakes share: the stride-2 conv makes it a per-channel constant that batch
  norm subtracts. Without the input norm D sees it (measured at full width: 0.081 vs 0.277)."""
  real, fake = _images(1, (16, 28, 28, 1)), _images(2, (16, 28, 28, 1))
  i, j = np.indices((28, 28))
  checker = jnp.asarray(0.3 * np.where((i + j) % 2 == 0, 1.0, -1.0), jnp.float32)[..., None]
  change = {}
  for input_norm in (True, False):
    c = config_lib.base_config()
    c.model.update(d_input_norm=input_norm, d_widths=(16, 32))
    d = train.create_train_state(config_lib.validate(c)).d
    f0 = train._d_logits(d, d.params, real, fake, False)[1]
    f1 = train._d_logits(d, d.params, real, fake + checker, False)[1]
    change[input_norm] = float(jnp.abs(f1 - f0).mean())
  assert change[False] > 2 * change[True], change


def test_input_norm_and_output_norm_change_the_parameters():
  c = config_lib.base_config()
  c.model.update(d_input_norm=False, g_output_norm=False)
  d = models.build_discriminator(c.model, 28)
  g = models.build_generator(c.model, 28, 1)
  dv = d.init(jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)))
  gv = g.init(jax.random.PRNGKey(0), jnp.zeros((2, 100)))
  assert "bias" in dv["params"]["down0"]["Conv_0"] and "down0" not in dv["batch_stats"]
  assert "BatchNorm_0" in dv["params"]["down1"]
  assert "out_bn" not in gv["params"] and "bias" in gv["params"]["out_conv"]
  x = g.apply(gv, jax.random.normal(jax.random.PRNGKey(1), (4, 100)))
  assert x.shape == (4, 28, 28, 1) and float(jnp.abs(x).max()) <= 1.0


def test_joint_logits_are_one_pass_over_the_concatenated_batch(tiny):
  state = _tiny_state(tiny)
  real, fake = _images(1, (4, 28, 28, 1)), _images(2, (4, 28, 28, 1))
  r, f, stats = train._d_logits(state.d, state.d.params, real, fake, joint=True)
  both, stats2 = train._apply(state.d, state.d.params, jnp.concatenate([real, fake]), train=True)
  np.testing.assert_array_equal(np.concatenate([r, f]), both)
  for a, b in zip(jax.tree_util.tree_leaves(stats), jax.tree_util.tree_leaves(stats2)):
    np.testing.assert_array_equal(a, b)


def test_joint_batch_norm_trains_class_stacked_models(tiny):
  state = _tiny_state(tiny, **{"model.name": "igan_v2", "model.num_classes": 2,
                               "model.class_stack": "unroll", "loss.d_bn_batch": "joint"})
  real = _images(3, (1, 2, 4, 28, 28, 1))
  state, m = train.train_step(state, real)
  assert bool(m["finite"])


def test_running_statistics_penalty_is_per_sample(tiny):
  """gp_bn="running": changing one interpolate leaves the others' gradient norms unchanged;
  with train-mode batch norm ("batch") every norm depends on the whole batch."""
  state = _tiny_state(tiny)
  d = state.d
  x = _images(4, (4, 28, 28, 1))
  x2 = x.at[3].set(_images(5, (28, 28, 1)))
  for train_mode, independent in ((False, True), (True, False)):
    fn = lambda v: train._apply(d, d.params, v, train=train_mode)[0]  # noqa: E731
    n1 = np.asarray(losses.gradient_penalty(fn, x)[1])
    n2 = np.asarray(losses.gradient_penalty(fn, x2)[1])
    assert np.allclose(n1[:3], n2[:3], rtol=1e-6) == independent, (train_mode, n1, n2)


def test_penalty_centre_and_treatment_change_the_step(tiny):
  real = _images(6, (1, 4, 28, 28, 1))
  results = {}
  for name, over in dict(base={}, center={"loss.gp_center": 0.0},
                         running={"loss.gp_bn": "running"}).items():
    _, m = train.train_step(_tiny_state(tiny, **{"loss.noise_std": 0.0, **over}), real)
    results[name] = float(m["gp"])
  assert results["center"] != results["base"] and results["running"] != results["base"]


def test_annealed_noise_is_zero_after_the_anneal(tiny):
  """Past noise_anneal iterations the step equals the noise-free step (bit-identical)."""
  real = _images(7, (1, 4, 28, 28, 1))
  noisy = _tiny_state(tiny, **{"loss.noise_anneal": 10})
  clean = _tiny_state(tiny, **{"loss.noise_std": 0.0})
  step = jnp.asarray(10, jnp.int32)
  _, a = train.train_step(noisy.replace(step=step), real)
  _, b = train.train_step(clean.replace(step=step), real)
  assert float(a["d_loss"]) == float(b["d_loss"]) and float(a["g_loss"]) == float(b["g_loss"])
  _, c = train.train_step(noisy.replace(step=jnp.asarray(5, jnp.int32)), real)
  assert float(c["d_loss"]) != float(b["d_loss"])


@pytest.mark.parametrize("r", [2, 4])
def test_resize_skip_upsample_has_no_phase_pattern(r):
  """A flat input map: "patch" (one weight set per output phase) paints a period-r pattern at
  init already; "resize" (bilinear, then one 3×3 conv) gives the same value at every interior
  position, whatever its weights."""
  x = jnp.ones((1, 7, 7, 4))
  out = {}
  for kind, m in (("patch", layers.PatchUpsample(4, r)), ("resize", layers.ResizeConv(4, r))):
    variables = m.init(jax.random.PRNGKey(1), x)
    out[kind] = np.asarray(m.apply(variables, x))[0]
    assert out[kind].shape == (7 * r, 7 * r, 4)
  inner = out["resize"][1:-1, 1:-1]
  np.testing.assert_allclose(inner, np.broadcast_to(inner[:1, :1], inner.shape), atol=1e-5)
  phases = out["patch"][:r, :r].reshape(r * r, 4)
  assert np.ptp(phases, axis=0).min() > 1e-2
  np.testing.assert_allclose(out["patch"][r:2 * r, :r], out["patch"][:r, :r])  # period r


def test_resize_skip_upsample_is_for_igan_only():
  c = config_lib.apply_variant(config_lib.base_config(), "igan_v2")
  c.model.skip_upsample = "resize"
  with pytest.raises(config_lib.ConfigError, match="igan generator only"):
    config_lib.validate(c)
  c = config_lib.apply_variant(config_lib.base_config(), "igan")
  c.model.skip_upsample = "resize"
  c.data.name, c.data.resolution = "fashion_mnist", 28
  g = models.build_generator(config_lib.validate(c).model, 28, 1)
  params = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((2, 100))))["params"]
  assert params["shortcut"]["kernel"].shape == (3, 3, 64, 64)
  assert params["branch"]["kernel"].shape == (3, 3, 64, 64)


def test_resize_main_upsample_replaces_every_main_path_block():
  """main_upsample="resize": each main-path block is one ResizeConv to C channels (7→14→28).
  With the shortcut and branch resized too, a fresh generator starts as smooth as ICNR makes
  the sub-pixel one (period-2 power, 16 channels: 0.0056 vs ICNR's 0.0059 and the default
  init's 0.14); the difference is that training cannot give its phases their own weights."""
  params, p2_resize = _init_period2_power(main_upsample="resize", skip_upsample="resize")
  assert params["up0_resize"]["kernel"].shape == (3, 3, 16, 16)
  assert params["up1_resize"]["kernel"].shape == (3, 3, 16, 16)
  assert not any(k.startswith(("up0_conv", "up1_convT")) for k in params)
  _, p2_default = _init_period2_power(upsample_init="default")
  _, p2_icnr = _init_period2_power(upsample_init="icnr")
  assert p2_resize < 0.01 and p2_icnr < 0.01 and p2_default > 0.05, (p2_resize, p2_icnr,
                                                                      p2_default)


def test_resize_main_upsample_is_for_igan_only():
  c = config_lib.apply_variant(config_lib.base_config(), "igan_v2")
  c.model.main_upsample = "resize"
  with pytest.raises(config_lib.ConfigError, match="model.main_upsample.*igan generator only"):
    config_lib.validate(c)


# ---------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize("key,value,match", [
    ("loss.gp_bn", "eval", "loss.gp_bn"),
    ("loss.d_bn_batch", "mixed", "loss.d_bn_batch"),
    ("loss.gp_center", -1.0, "loss.gp_center"),
    ("loss.noise_anneal", -5, "loss.noise_anneal"),
    ("model.dropout_blocks", -1, "model.dropout_blocks"),
    ("model.upsample_init", "he", "model.upsample_init"),
    ("model.d_input_norm", "no", "model.d_input_norm"),
    ("model.g_output_norm", 0, "model.g_output_norm"),
    ("model.skip_upsample", "nearest", "model.skip_upsample"),
    ("model.main_upsample", "transposed", "model.main_upsample"),
])
def test_bad_recipe_values_are_refused(key, value, match):
  c = config_lib.base_config()
  section, name = key.split(".")
  with c[section].ignore_type():  # ConfigDict refuses a type change itself; validate() is
    c[section][name] = value      # what sees a bad value from a config file
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.validate(c)


def test_saved_config_without_the_new_keys_keeps_the_old_behaviour():
  """A workdir written before these keys existed loads with the behaviour it was trained with."""
  saved = config_lib.base_config().to_dict()
  for section, key in (("loss", "gp_center"), ("loss", "gp_bn"), ("loss", "d_bn_batch"),
                       ("loss", "noise_anneal"), ("model", "dropout_blocks"),
                       ("model", "upsample_init"), ("model", "d_input_norm"),
                       ("model", "g_output_norm"), ("model", "skip_upsample"),
                       ("model", "main_upsample")):
    del saved[section][key]
  saved["model"]["d_widths"] = []  # JSON has lists where the config has tuples
  c = config_lib.from_saved(saved)
  hp = train.step_config(c)
  assert (hp.gp_center, hp.gp_bn, hp.d_bn_batch, hp.noise_anneal) == (1.0, "batch", "separate", 0)
  assert (c.model.dropout_blocks, c.model.upsample_init) == (2, "default")
  assert c.model.d_input_norm and c.model.g_output_norm
  assert c.model.skip_upsample == "patch" and c.model.main_upsample == "subpixel"
  assert c.model.d_widths == ()
