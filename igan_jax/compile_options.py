"""`jit`: jax.jit with the XLA compile options this project measured per backend.

One option today, on XLA:CPU only: convolutions run on XLA's own (Eigen) kernels instead of
YNNPACK. jaxlib 0.10.2 hands convolutions, dots and reductions on CPU to YNNPACK by default
(DebugOptions.xla_cpu_experimental_ynn_fusion_type = INDIVIDUAL_DOT, REDUCE,
INDIVIDUAL_CONVOLUTION). YNNPACK's weight-gradient convolutions are several times slower than
XLA's kernels at this project's shapes (batch 64, 3×3 SAME, 7×7 to 28×28 maps), which made one
IGAN iteration at 28×28 about 1.4× slower (benchmarks/throughput.py; the measurements, with their
machine, are in docs/speed.md). Dots and reductions stay on YNNPACK: taking reductions off too
made the iteration slower, dots made no difference. So on CPU the option becomes INDIVIDUAL_DOT,
REDUCE.

The options are per compilation (jax.jit's `compiler_options`), not process-wide XLA_FLAGS, so
nothing else in the user's process changes, and they are chosen when a function first runs on a
backend: other backends (GPU) compile without them. Where they are refused (a jaxlib that no
longer knows the option) the function compiles without them after one warning; where the user
sets the same option in XLA_FLAGS, theirs wins.
"""
from __future__ import annotations

import functools
import os
import threading
import warnings
from typing import Any, Callable, Mapping

import jax

YNN_FUSION_OPTION = "xla_cpu_experimental_ynn_fusion_type"
# jaxlib 0.10.2's default list less INDIVIDUAL_CONVOLUTION (why: the module docstring).
CPU_OPTIONS = {YNN_FUSION_OPTION: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}

try:  # private; see _tracing
  from jax._src.core import trace_state_clean as _trace_state_clean
except ImportError:
  _trace_state_clean = None

_supported: dict[str, bool] = {}
_lock = threading.Lock()


def options_for(backend: str, xla_flags: str | None = None) -> dict[str, Any]:
  """The compile options for `backend` ("cpu", "gpu", ...); {} where there are none.

  xla_flags: the XLA_FLAGS to respect (default: the environment's); an option the user sets
  there is not overridden."""
  if backend != "cpu":
    return {}
  flags = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
  return {k: v for k, v in CPU_OPTIONS.items() if f"--{k}" not in flags}


def supported(options: Mapping[str, Any], backend: str | None = None) -> bool:
  """Whether this jaxlib compiles with `options` (checked once per option set, on a tiny
  function); warns once when it does not."""
  key = repr(sorted(options.items())) + str(backend)
  with _lock:
    if key not in _supported:
      try:
        x = jax.device_put(jax.numpy.zeros((), jax.numpy.float32),
                           jax.devices(backend)[0] if backend else None)
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(x).compile()
        _supported[key] = True
      except Exception as e:  # XlaRuntimeError INVALID_ARGUMENT from an unknown option or value
        warnings.warn(f"XLA refused the compile options {dict(options)} ({e}); compiling "
                      "without them (slower convolutions on CPU)", RuntimeWarning, stacklevel=3)
        _supported[key] = False
    return _supported[key]


def _tracing(args, kwargs) -> bool:
  """Whether this call happens inside a JAX transformation (jit, grad, vmap, scan, ...).

  JAX's own trace state answers in ~0.3 µs, and covers a transformation whose arguments are all
  constants; scanning the arguments for tracers (~70 µs for a GANState's 178 leaves, on every
  training step) is only the fallback for a JAX without that private function."""
  if _trace_state_clean is not None:
    return not _trace_state_clean()
  leaves = jax.tree_util.tree_leaves((args, kwargs))
  return any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


class BackendJit:
  """A jax.jit of `fun` per backend, each with `options_for(backend)`.

  Calls (and attributes such as `.lower`) go to the jitted function of the default backend, so
  it is used like the jax.jit it wraps. Called inside another transformation it is a plain
  jax.jit (JAX takes compile options only at the top level; the outer one's apply).
  """

  def __init__(self, fun: Callable, **jit_kwargs):
    self._fun = fun
    self._jit_kwargs = jit_kwargs
    self._by_backend: dict[str, Any] = {}
    self._nested = None
    functools.update_wrapper(self, fun)

  def jitted(self, backend: str | None = None):
    backend = backend or jax.default_backend()
    fn = self._by_backend.get(backend)
    if fn is None:
      options = options_for(backend)
      if options and not supported(options, backend):
        options = {}
      fn = jax.jit(self._fun, compiler_options=options or None, **self._jit_kwargs)
      self._by_backend[backend] = fn
    return fn

  def __call__(self, *args, **kwargs):
    if _tracing(args, kwargs):
      if self._nested is None:
        self._nested = jax.jit(self._fun, **self._jit_kwargs)
      return self._nested(*args, **kwargs)
    return self.jitted()(*args, **kwargs)

  def __getattr__(self, name):
    if name.startswith("__"):
      raise AttributeError(name)
    return getattr(self.jitted(), name)


def jit(fun: Callable | None = None, **jit_kwargs):
  """Like jax.jit (also as `@jit` or `@functools.partial(jit, static_argnames=...)`), with the
  per-backend compile options above."""
  if fun is None:
    return functools.partial(jit, **jit_kwargs)
  return BackendJit(fun, **jit_kwargs)
