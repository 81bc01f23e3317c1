"""igan_jax: IGAN (Chen, Zeng et al. 2022) and its baselines in JAX/Flax.

The pure-function API:

    config = igan_jax.load_config("experiments/fashion_mnist.py")
    state = igan_jax.create_train_state(config, jax.random.PRNGKey(0))
    state, metrics = igan_jax.train_step(state, real)        # real: (n_critic, B, H, W, C)
    state, metrics = igan_jax.train_steps(state, images, k)  # images: uint8 (N, H, W, C)
    images = igan_jax.generate(state, z)                      # in [−1, 1]

Names resolve lazily, so `import igan_jax.data` (e.g. the dataset preparation subprocess) does
not start JAX.
"""
import importlib

_EXPORTS = {
    "load_config": "igan_jax.config",
    "create_train_state": "igan_jax.train",
    "train_step": "igan_jax.train",
    "train_steps": "igan_jax.train",
    "generate": "igan_jax.train",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f"module 'igan_jax' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + __all__)
