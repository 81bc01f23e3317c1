"""The model family (docs/paper.md §1.2, §1.4): IGAN, IGAN_V2/VN, DCGAN, WGAN-GP built from a
config.

Shapes and ranges at 28 and 96 for every model; the WGAN-GP critic has no batch norm; the
vmapped class heads and class discriminators compute exactly what N separately applied modules
with the sliced parameters compute (outputs, batch-norm statistic updates, gradients); parameter
counts of the paper-sized models (`python tests/test_model_family.py` prints the table).
Widths are tiny; the compiled runs at 96 and of igan_v2 (igan_vn's code with N = 2) are marked
slow, 96 is still checked by tracing. The paper-sized counts use jax.eval_shape (no compute).
"""
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from igan_jax import models  # noqa: E402
from igan_jax.config import base_config  # noqa: E402
from igan_jax.models import igan_vn  # noqa: E402

# Tests check values, not speed: XLA:CPU spent most of this file's time optimising the
# random-number code of init and dropout (threefry) in LLVM; unoptimised it compiles ~4× faster.
FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
jit = functools.partial(jax.jit, compiler_options=FAST)

Z_DIM = 100
RESOLUTIONS = (28, 96)
CHANNELS = {28: 1, 96: 3}


def small_cfg(name, **kw):
  """The paper's model config with tiny widths; extra keys (num_classes, …) set if given."""
  c = base_config().model
  c.name = name
  c.channels = 4
  c.d_widths = (4, 8)
  for k, v in kw.items():
    c[k] = v
  return c


def paper_cfg(name):
  c = base_config().model
  c.name = name
  return c


def tree_slice(tree, k):
  return jax.tree_util.tree_map(lambda a: a[k], tree)


def assert_trees_close(a, b, tol=1e-6):
  la, ta = jax.tree_util.tree_flatten(a)
  lb, tb = jax.tree_util.tree_flatten(b)
  assert ta == tb
  for x, y in zip(la, lb):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def random_variables(model, *args):
  """Variables of the right structure without compiling `init` (its random-number code is most
  of the compile time): shapes from jax.eval_shape, values from numpy — BN scale / running var
  1, shift / running mean 0, weights N(0, 1/fan_in) as lecun_normal, so activations have the
  scale of a real init. Stacked members (under "heads" / "discs") get their own values."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *args))
  rng = np.random.default_rng(0)

  def fill(path, s):
    leaf = path[-1].key
    if leaf in ("scale", "var"):
      return jnp.ones(s.shape, s.dtype)
    if leaf in ("bias", "mean"):
      return jnp.zeros(s.shape, s.dtype)
    stacked = any(getattr(p, "key", None) in ("heads", "discs") for p in path)
    fan_in = int(np.prod(s.shape[1 if stacked else 0:-1]))
    return jnp.asarray(rng.standard_normal(s.shape) / np.sqrt(fan_in), s.dtype)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def run_train(model, variables, x, key=jax.random.PRNGKey(7)):
  """One train-mode apply (dropout on, batch statistics updated), jitted."""
  @jit
  def f(v, x):
    return model.apply(v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])
  return f(variables, x)


# --------------------------------------------------------------------------- shapes, ranges


def family(name, res, b=3):
  """(generator, discriminator, z, expected image shape, expected logit shape) at tiny widths."""
  cfg = small_cfg(name, num_classes=3) if name == "igan_vn" else small_cfg(name)
  n, ch = models.num_classes(cfg), CHANNELS[res]
  lead = (n,) if name in models.CLASS_STACKED else ()
  z = jax.random.normal(jax.random.PRNGKey(0), (b, Z_DIM))
  return (models.build_generator(cfg, res, ch), models.build_discriminator(cfg, res), z,
          lead + (b, res, res, ch), lead + (b,))


@pytest.mark.parametrize("res", (96,))
@pytest.mark.parametrize("name", models.MODELS)
def test_shapes_abstractly(name, res):
  """Every model at 96, train and eval mode, traced only (jax.eval_shape): the compiled runs
  below cover 28 and, marked slow, 96."""
  g, d, z, image_shape, logit_shape = family(name, res)
  rngs = {"dropout": jax.random.PRNGKey(0)}
  gv = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(1), z))
  for train in (True, False):
    fake = jax.eval_shape(lambda v: g.apply(v, z, train=train, rngs=rngs,
                                            mutable=["batch_stats"]), gv)
    assert fake[0].shape == image_shape and fake[0].dtype == jnp.float32
  dv = jax.eval_shape(lambda: d.init(jax.random.PRNGKey(1), jnp.zeros(image_shape)))
  for train in (True, False):
    logits = jax.eval_shape(lambda v: d.apply(v, jnp.zeros(image_shape), train=train,
                                              mutable=["batch_stats"]), dv)
    assert logits[0].shape == logit_shape and logits[0].dtype == jnp.float32


def _run_cases():
  # igan_v2 is igan_vn's code with N = 2, and 96 costs more compile time than 28: marked slow.
  for name in models.MODELS:
    for res in RESOLUTIONS:
      slow = res == 96 or name == "igan_v2"
      yield pytest.param(name, res, marks=pytest.mark.slow) if slow else (name, res)


@pytest.mark.parametrize("name,res", list(_run_cases()))
def test_generator_and_discriminator_run(name, res):
  """Compiled and run: images in [−1, 1] of the right shape, finite logits."""
  g, d, z, want, logit_shape = family(name, res)
  gv = random_variables(g, z)
  fake, _ = run_train(g, gv, z)
  assert fake.shape == want and fake.dtype == jnp.float32
  assert np.all(np.abs(np.asarray(fake)) <= 1.0)
  assert jit(lambda v, z: g.apply(v, z, train=False))(gv, z).shape == want

  dv = random_variables(d, fake)
  logits, _ = run_train(d, dv, fake) if "batch_stats" in dv else (
      jit(lambda v, x: d.apply(v, x, train=True))(dv, fake), None)
  assert logits.shape == logit_shape
  assert np.all(np.isfinite(np.asarray(logits)))


@pytest.mark.parametrize("critic_norm", ("none", "layer", None))
def test_wgan_gp_critic_has_no_batch_norm(critic_norm):
  cfg = small_cfg("wgan_gp") if critic_norm is None else small_cfg("wgan_gp",
                                                                   critic_norm=critic_norm)
  d = models.build_discriminator(cfg, 28)
  assert d.norm == (critic_norm or "none")  # "none" when the config predates the key
  v = jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1))))
  assert set(v) == {"params"}


def test_wgan_gp_refuses_batch_norm():
  with pytest.raises(ValueError, match="no batch norm"):
    models.build_discriminator(small_cfg("wgan_gp", critic_norm="batch"), 28)


def test_dcgan_follows_the_architecture_guidelines():
  """DCGAN §3: no BN on the D input layer nor on the G output layer; no hidden dense layer."""
  cfg = paper_cfg("dcgan")
  g, d = models.build_generator(cfg, 96, 3), models.build_discriminator(cfg, 96)
  gv = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((1, Z_DIM))))
  dv = jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), jnp.zeros((1, 96, 96, 3))))
  assert gv["params"]["project"]["kernel"].shape == (Z_DIM, 6 * 6 * 512)
  assert "out_bn" not in gv["params"] and "out" in gv["params"]
  assert gv["params"]["out"]["kernel"].shape == (5, 5, 64, 3)
  assert "down0_norm" not in dv["batch_stats"] and "down1_norm" in dv["batch_stats"]
  dense = [k for k in dv["params"] if "Dense" in k or k == "logit"]
  assert dense == ["logit"] and dv["params"]["logit"]["kernel"].shape == (6 * 6 * 512, 1)


# --------------------------------------------------------------------------- IGAN_V2 / VN


def test_num_classes_defaults_and_checks():
  assert models.num_classes(paper_cfg("igan_vn")) == 10  # no num_classes key yet
  assert models.num_classes(paper_cfg("igan_v2")) == 2
  assert models.num_classes(small_cfg("igan_vn", num_classes=0)) == 10
  assert models.num_classes(small_cfg("igan_vn", num_classes=5)) == 5
  assert models.num_classes(paper_cfg("igan")) == 1
  with pytest.raises(ValueError, match="two-class"):
    models.num_classes(small_cfg("igan_v2", num_classes=3))
  with pytest.raises(ValueError, match="unknown model"):
    models.build_generator(small_cfg("gan"), 28, 1)
  with pytest.raises(ValueError, match="unknown model"):
    models.build_discriminator(small_cfg("gan"), 28)


def test_igan_vn_layout_at_96():
  """Paper-sized IGAN_VN: IGAN's stems, the stride-1 deepening convs, N stacked heads."""
  g = models.build_generator(paper_cfg("igan_vn"), 96, 3)
  v = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((1, Z_DIM))))
  trunk, heads = v["params"]["trunk"], v["params"]["heads"]
  assert trunk["fc_base"]["kernel"].shape == (Z_DIM, 4 * 4 * 64)
  assert trunk["fc_branch"]["kernel"].shape == (Z_DIM, 24 * 24 * 64)
  # A 3×3 stride-1 conv after every transposed conv (the "ct" blocks and the shortcut) only.
  for i, (kind, _) in enumerate(models.TOPOLOGY[96]["ups"]):
    assert (f"up{i}_refine" in trunk) == (kind == "ct")
  assert trunk["shortcut_refine"]["kernel"].shape == (3, 3, 64, 64)
  assert "branch" not in trunk  # IGAN's 24→96 transposed conv became the per-class IBlocks
  for leaf in jax.tree_util.tree_leaves(heads):
    assert leaf.shape[0] == 10
  assert heads["iblock0_convT"]["kernel"].shape == (10, 3, 3, 64, 64)
  assert heads["out_conv"]["kernel"].shape == (10, 3, 3, 64, 3)
  assert v["batch_stats"]["heads"]["out_bn"]["mean"].shape == (10, 3)  # per-class statistics


def test_vmapped_heads_equal_separate_heads():
  n, b, res = 3, 4, 28
  g = igan_vn.IGANVNGenerator(num_classes=n, resolution=res, out_channels=1, channels=4)
  z = jax.random.normal(jax.random.PRNGKey(0), (b, Z_DIM))
  v = random_variables(g, z)  # different values per head, as split_rngs gives (tested below)
  # Non-trivial running statistics, different per head, so the slicing is really checked.
  v = dict(v, batch_stats=jax.tree_util.tree_map(
      lambda a: a + 0.1 * jax.random.uniform(jax.random.PRNGKey(3), a.shape), v["batch_stats"]))
  key = jax.random.PRNGKey(5)
  images, new = run_train(g, v, z, key)
  assert images.shape == (n, b, res, res, 1)
  # The trunk's output as computed inside the full model (same dropout rng stream).
  (s, left), trunk_new = jit(lambda v, z: g.apply(
      v, z, True, rngs={"dropout": key}, mutable=["batch_stats"],
      method=lambda m, z, t: m.trunk(z, t)))(v, z)
  assert_trees_close(trunk_new["batch_stats"]["trunk"], new["batch_stats"]["trunk"])
  head = igan_vn.IGANVNHead(resolution=res, out_channels=1, channels=4)
  apply_head = jit(lambda hv, s, left: head.apply(hv, s, left, True,
                                                      mutable=["batch_stats"]))
  for k in range(n):
    hv = {"params": tree_slice(v["params"]["heads"], k),
          "batch_stats": tree_slice(v["batch_stats"]["heads"], k)}
    img, hnew = apply_head(hv, s, left)
    # float32 rounding only (fusions differ); a wrongly sliced head would be off by O(1).
    np.testing.assert_allclose(images[k], img, rtol=1e-5, atol=1e-5)
    assert_trees_close(hnew["batch_stats"], tree_slice(new["batch_stats"]["heads"], k))


def test_stacked_discriminator_equals_separate_discriminators():
  n, b, res, widths = 3, 4, 28, (4, 8)
  d = igan_vn.StackedDiscriminator(num_classes=n, widths=widths)
  x = jax.random.normal(jax.random.PRNGKey(0), (n, b, res, res, 1))
  v = random_variables(d, x)
  v = dict(v, batch_stats=jax.tree_util.tree_map(
      lambda a: a + 0.1 * jax.random.uniform(jax.random.PRNGKey(3), a.shape), v["batch_stats"]))
  single = models.ResidualDiscriminator(widths=widths)

  def stacked_fn(params, stats, x):
    logits, new = d.apply({"params": params, "batch_stats": stats}, x, train=True,
                          mutable=["batch_stats"])
    return jnp.sum(logits * jnp.arange(1, b + 1)), (logits, new["batch_stats"])

  def single_fn(params, stats, x):
    logits, new = single.apply({"params": params, "batch_stats": stats}, x, train=True,
                               mutable=["batch_stats"])
    return jnp.sum(logits * jnp.arange(1, b + 1)), (logits, new["batch_stats"])

  grads, (logits, stats) = jit(jax.grad(stacked_fn, has_aux=True))(v["params"],
                                                                    v["batch_stats"], x)
  assert logits.shape == (n, b)
  single_grad = jit(jax.grad(single_fn, has_aux=True))
  for k in range(n):
    g_k, (l_k, s_k) = single_grad(tree_slice(v["params"]["discs"], k),
                                         tree_slice(v["batch_stats"]["discs"], k), x[k])
    np.testing.assert_allclose(logits[k], l_k, rtol=1e-6, atol=1e-6)
    assert_trees_close(tree_slice(stats["discs"], k), s_k)  # per-class BN statistics
    # Gradients: the batched convolutions sum in another order and batch norm's backward pass
    # cancels large terms, so they agree to float32 noise relative to each leaf's scale.
    for a, b_ in zip(jax.tree_util.tree_leaves(tree_slice(grads["discs"], k)),
                     jax.tree_util.tree_leaves(g_k)):
      np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(b_))))


def test_stacked_members_are_initialised_independently():
  """split_rngs={"params": True}: class k's parameters come from their own key (heads and
  discriminators share the same vmap settings, igan_vn._STACK)."""
  d = igan_vn.StackedDiscriminator(num_classes=2, widths=(4,))
  v = jit(lambda k: d.init(k, jnp.zeros((2, 1, 8, 8, 1))))(jax.random.PRNGKey(0))
  kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(v["params"])
             if path[-1].key == "kernel"]  # biases and BN scales start equal by design
  assert len(kernels) == 4
  for leaf in kernels:
    assert not np.allclose(leaf[0], leaf[1])


def test_unrolled_stack_computes_what_vmap_computes():
  """stack="unroll" (fast on XLA:CPU) reads the same variables as "vmap" and gives the same
  logits and statistics; the config key selects it and a bad value is refused."""
  cfg = small_cfg("igan_v2", class_stack="unroll", d_widths=(4,))
  unrolled = models.build_discriminator(cfg, 28)
  assert unrolled.stack == "unroll"
  vmapped = unrolled.clone(stack="vmap")
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 16, 16, 1))
  v = random_variables(vmapped, x)
  assert (jax.tree_util.tree_structure(jax.eval_shape(lambda: unrolled.init(
      jax.random.PRNGKey(0), x))) == jax.tree_util.tree_structure(v))
  a = run_train(vmapped, v, x)
  b = run_train(unrolled, v, x)
  assert_trees_close(a, b)
  with pytest.raises(ValueError, match="unroll"):
    models.build_generator(small_cfg("igan_vn", class_stack="pmap"), 28, 1)


def test_stacked_discriminator_rejects_unstacked_input():
  d = igan_vn.StackedDiscriminator(num_classes=2, widths=(4,))
  with pytest.raises(ValueError, match="N=2"):
    jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1))))
  with pytest.raises(ValueError, match="N=2"):
    jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), jnp.zeros((3, 2, 28, 28, 1))))


# --------------------------------------------------------------------------- parameter counts


def param_table():
  """Rows (model, resolution, generator params, discriminator params) at the paper's widths."""
  rows = []
  for name in models.MODELS:
    cfg = paper_cfg(name)
    n = models.num_classes(cfg)
    for res in RESOLUTIONS:
      ch = CHANNELS[res]
      g, d = models.build_generator(cfg, res, ch), models.build_discriminator(cfg, res)
      x = jnp.zeros(((n,) if name in models.CLASS_STACKED else ()) + (1, res, res, ch))
      gv = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((1, Z_DIM))))
      dv = jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), x))
      rows.append((name, res, models.param_count(gv["params"]), models.param_count(dv["params"])))
  return rows


def test_param_counts():
  rows = {(m, r): (gp, dp) for m, r, gp, dp in param_table()}  # printed by `python <this file>`
  # The N discriminators are N copies of IGAN's; the heads add a fixed amount per class.
  for r in RESOLUTIONS:
    assert rows["igan_vn", r][1] == 10 * rows["igan", r][1]
    assert rows["igan_v2", r][1] == 2 * rows["igan", r][1]
    per_head = (rows["igan_vn", r][0] - rows["igan_v2", r][0]) / 8
    assert per_head == int(per_head) and per_head > 0
    assert rows["wgan_gp", r][0] == rows["dcgan", r][0]  # the same generator
    assert rows["wgan_gp", r][1] < rows["dcgan", r][1]   # the critic lacks BN's scale/bias


if __name__ == "__main__":
  print("model     res  generator  discriminator")
  for m, r, gp, dp in param_table():
    print(f"{m:8s} {r:4d} {gp:10,d} {dp:14,d}")
