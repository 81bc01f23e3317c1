"""compile_options.jit: the per-backend XLA options (CPU convolutions off YNNPACK)."""
from __future__ import annotations

import functools
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from igan_jax import compile_options
from igan_jax.compile_options import CPU_OPTIONS, YNN_FUSION_OPTION, jit, options_for

cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU options")


def _conv(x, w):
  return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _conv_grads(x, w):  # forward, input gradient and weight gradient, as in a D update
  y, vjp = jax.vjp(_conv, x, w)
  return (y,) + vjp(y)


def ynn_convolutions(hlo: str) -> int:
  """How many YNNPACK fusions of a compiled module contain a convolution."""
  bodies = {}
  for m in re.finditer(r"^%?([\w.\-]+) [^\n]*\{\n(.*?)\n\}", hlo, re.S | re.M):
    bodies[m.group(1)] = m.group(2)
  called = re.findall(r"calls=%?([\w.\-]+)[^\n]*__ynn_fusion", hlo)
  return sum("convolution(" in bodies.get(name, "") for name in called)


def _args():  # big enough for XLA's cost model to hand the convolutions to a library
  rng = np.random.default_rng(0)
  return (jnp.asarray(rng.normal(size=(64, 14, 14, 64)), jnp.float32),
          jnp.asarray(rng.normal(size=(3, 3, 64, 64)) * 0.1, jnp.float32))


def test_options_per_backend():
  assert options_for("cpu", xla_flags="") == CPU_OPTIONS
  assert options_for("gpu", xla_flags="") == {}
  assert options_for("tpu", xla_flags="") == {}


def test_the_users_xla_flags_win():
  flags = f"--xla_cpu_enable_fast_math=false --{YNN_FUSION_OPTION}=-reduce"
  assert YNN_FUSION_OPTION not in options_for("cpu", xla_flags=flags)
  assert options_for("cpu", xla_flags="--xla_cpu_enable_fast_math=false") == CPU_OPTIONS


@cpu_only
def test_refused_options_warn_and_are_dropped():
  with pytest.warns(RuntimeWarning, match="refused"):
    assert not compile_options.supported({YNN_FUSION_OPTION: "NOT_A_FUSION_TYPE"}, "cpu")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert compile_options.supported(CPU_OPTIONS, "cpu")


@cpu_only
def test_cpu_convolutions_leave_ynnpack_and_keep_their_values():
  x, w = _args()
  plain = jax.jit(_conv_grads).lower(x, w).compile().as_text()
  tuned = jit(_conv_grads).lower(x, w).compile().as_text()
  # jaxlib 0.10.2 sends these convolutions to YNNPACK; if this stops holding, the option in
  # compile_options may be obsolete (re-measure benchmarks/throughput.py).
  assert ynn_convolutions(plain) >= 1
  assert ynn_convolutions(tuned) == 0
  assert "convolution(" in tuned
  want = jax.jit(_conv_grads)(x, w)
  got = jit(_conv_grads)(x, w)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4 * float(jnp.max(jnp.abs(b))))


def test_behaves_like_jax_jit():
  @functools.partial(jit, static_argnames="k")
  def scaled(x, k):
    """x times k."""
    return x * k

  assert scaled.__doc__ == "x times k." and scaled.__name__ == "scaled"
  np.testing.assert_allclose(scaled(jnp.arange(3.0), k=2), [0.0, 2.0, 4.0])
  assert scaled.lower(jnp.arange(3.0), k=3).compile() is not None
  # Inside another jit it is inlined like any jitted function, and differentiable.
  outer = jax.jit(jax.grad(lambda x: jnp.sum(scaled(x, k=4) ** 2)))
  np.testing.assert_allclose(outer(jnp.ones(2)), [32.0, 32.0])
  grad_only = jax.grad(lambda x: jnp.sum(scaled(x, k=4) ** 2))  # a transformation without jit
  np.testing.assert_allclose(grad_only(jnp.ones(2)), [32.0, 32.0])
  constants_only = jax.jit(lambda: scaled(jnp.arange(2.0), k=2))  # no traced argument
  np.testing.assert_allclose(constants_only(), [0.0, 2.0])
  wrapper = jit(jnp.sin)
  assert wrapper.jitted() is wrapper.jitted()
  # A top-level call compiles with the backend's options; only nested calls use the plain jit.
  fresh = jit(jnp.cos)
  fresh(jnp.ones(2))
  assert jax.default_backend() in fresh._by_backend and fresh._nested is None
  jax.jit(lambda x: fresh(x))(jnp.ones(2))
  assert fresh._nested is not None


def test_tracing_check_falls_back_to_the_arguments(monkeypatch):
  monkeypatch.setattr(compile_options, "_trace_state_clean", None)
  seen = []
  jax.jit(lambda x: seen.append(compile_options._tracing((x,), {})) or x)(jnp.ones(2))
  assert seen == [True]
  assert not compile_options._tracing((jnp.ones(2),), {})
