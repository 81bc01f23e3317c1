"""Configuration: the paper's defaults, validation with one-line errors, and loading config files.

Every paper item is a config value whose default is the paper's (DESIGN §1.3); values the paper
does not give are marked "R" (our reconstruction, SPEC.md) or "ours".
"""
from __future__ import annotations

import importlib.util
import os

import ml_collections

from igan_jax.models import MODELS, supported_resolutions

LOOPS = ("auto", "python", "scan")


class ConfigError(ValueError):
  """A bad configuration value; str(e) says which key and what to do."""


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0                       # SPEC §2: every random number seeded
  c.num_iterations = 20_000        # ours: the paper does not state its run length
  c.batch_size = 64                # SPEC §3
  c.n_critic = 3                   # SPEC §2: D trained 3-5 times per G step
  c.checkpoint_every = 100         # SPEC §3: weights saved every 100 steps
  c.log_every = 30                 # SPEC §3: losses recorded every 30 steps
  c.sample_every = 100             # SPEC §3: a sample grid every 100 steps
  c.keep_checkpoints = 3
  c.num_samples = 64               # images in a sample grid (fixed z)
  # How train_steps runs k iterations: "python" (a loop of jitted steps) or "scan" (one compiled
  # lax.scan). "auto" = python on CPU, scan elsewhere: on XLA:CPU the scan ran ~10× slower, on a
  # GPU it cost nothing (shared/bench/torch_ref/README.md).
  c.loop = "auto"
  c.ema_decay = 0.0                # ours, not in the paper: EMA of G's weights when > 0
  # Robustness (ours). A non-finite loss or gradient rolls back to the last good checkpoint
  # with a fresh fold of the rng, at most max_rollbacks times.
  c.max_rollbacks = 3
  # SPEC §2: "if D's loss rapidly approaches 0, stop, adjust, retrain": warn when D's adversarial
  # loss stays below collapse_threshold for collapse_patience logged windows; optionally stop.
  c.collapse_threshold = 1e-3
  c.collapse_patience = 3
  c.stop_on_collapse = False

  c.data = ml_collections.ConfigDict()
  c.data.name = "fashion_mnist"
  c.data.split = "train"
  c.data.resolution = 28           # 28 native, or 96 (resized once; SPEC §1.1 R)
  c.data.data_dir = ""             # "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
  c.data.manual_dir = ""           # "" = <data_dir>/downloads/manual

  c.model = ml_collections.ConfigDict()
  c.model.name = "igan"
  c.model.z_dim = 100              # SPEC §1.1
  c.model.channels = 64            # SPEC §1.1
  c.model.dropout = 0.2            # R: "dropout in some layers"
  c.model.bn_momentum = 0.9        # ours (PyTorch's 0.1 update): running stats track quickly
  c.model.bn_epsilon = 1e-5
  c.model.d_widths = ()            # () = the default for the resolution (discriminator.py)
  c.model.d_norm = "batch"         # SPEC §1.3: BN; "layer" | "none" selectable
  c.model.dtype = "float32"        # "bfloat16" computes in bf16, params stay float32

  c.loss = ml_collections.ConfigDict()
  c.loss.name = "least_squares"    # SPEC §2: "log removed"; "bce" keeps it
  c.loss.real_label = 0.9          # α, SPEC §2 label smoothing (R: value)
  c.loss.fake_label = 0.1          # β
  c.loss.gp_weight = 5.0           # λ, SPEC §2/§3
  c.loss.noise_std = 0.1           # instance noise on both D inputs (R: value)

  c.optim = ml_collections.ConfigDict()
  c.optim.schedule = "igan_decay"  # or "constant"
  c.optim.d_init_lr = 0.002        # SPEC §2: simple datasets start at 0.002 ...
  c.optim.d_end_lr = 0.0002        # ... and decay to 0.0002
  c.optim.gamma = 0.5              # R: eq. 6 lost
  c.optim.decay_steps = 1000       # R: eq. 6's init_set
  c.optim.g_lr_ratio = 1.5         # SPEC §2: G lr = 1.5 × D lr
  c.optim.b1 = 0.5                 # ours (DCGAN's); the paper says only "Adam"
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  return c


VARIANTS = ("igan", "dcgan", "wgan_gp")


def apply_variant(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """Sets the model and its own recipe: `--config=experiments/<data>.py:<variant>`.

  igan: the paper's recipe (the defaults above).
  dcgan: Radford et al. 2015 §3–4: BCE with hard 1/0 labels, Adam lr 2e-4, β1 = 0.5, batch norm
    in both nets, one D update per G update, no penalty, no instance noise, constant lr.
  wgan_gp: Gulrajani et al. 2017, Algorithm 1: Wasserstein loss, λ = 10, n_critic = 5,
    Adam lr 1e-4, β = (0, 0.9), no batch norm in the critic, constant lr.
  """
  arg = arg or "igan"
  if arg not in VARIANTS:
    raise ValueError(f"unknown variant {arg!r}; available: {', '.join(VARIANTS)}")
  c.model.name = arg
  if arg == "dcgan":
    c.loss.update(name="bce", real_label=1.0, fake_label=0.0, gp_weight=0.0, noise_std=0.0)
    c.n_critic = 1
    c.optim.update(schedule="constant", d_init_lr=2e-4, d_end_lr=2e-4, g_lr_ratio=1.0,
                   b1=0.5, b2=0.999)
  elif arg == "wgan_gp":
    c.loss.update(name="wasserstein", gp_weight=10.0, noise_std=0.0)
    c.n_critic = 5
    c.optim.update(schedule="constant", d_init_lr=1e-4, d_end_lr=1e-4, g_lr_ratio=1.0,
                   b1=0.0, b2=0.9)
  return c


def _check(cond: bool, key: str, msg: str):
  if not cond:
    raise ConfigError(f"config.{key}: {msg}")


def validate(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Raises ConfigError naming the key and the fix for the first bad value; returns c."""
  from igan_jax.data import SUPPORTED, is_supported  # late: keeps `import igan_jax.config` light

  for key in ("num_iterations", "batch_size", "n_critic", "checkpoint_every", "log_every",
              "sample_every", "keep_checkpoints", "num_samples"):
    v = c[key]
    _check(isinstance(v, int) and not isinstance(v, bool), key, f"must be an integer, got {v!r}")
    lo = 0 if key == "num_iterations" else 1
    _check(v >= lo, key, f"must be ≥ {lo}, got {v}")
  _check(isinstance(c.seed, int), "seed", f"must be an integer, got {c.seed!r}")
  _check(c.max_rollbacks >= 0, "max_rollbacks", f"must be ≥ 0, got {c.max_rollbacks}")
  _check(c.collapse_patience >= 1, "collapse_patience", f"must be ≥ 1, got {c.collapse_patience}")
  _check(0 <= c.ema_decay < 1, "ema_decay", f"must be in [0, 1), got {c.ema_decay}")
  _check(c.loop in LOOPS, "loop", f"must be one of {LOOPS}, got {c.loop!r}")
  _check(is_supported(c.data.name), "data.name",
         f"unknown dataset {c.data.name!r}; supported: {', '.join(SUPPORTED)}, "
         "lsun/<category>, folder:/abs/path")
  _check(c.data.resolution in supported_resolutions(), "data.resolution",
         f"must be one of {supported_resolutions()}, got {c.data.resolution!r}")
  _check(c.model.name in MODELS, "model.name",
         f"unknown model {c.model.name!r}; choose one of {', '.join(MODELS)}")
  _check(c.model.name not in ("igan_v2", "igan_vn"), "model.name",
         f"{c.model.name} is built (igan_jax/models/igan_vn.py) but its per-class training "
         "step is not wired into train.py yet; train igan, dcgan or wgan_gp")
  _check(c.model.d_norm in ("batch", "layer", "none"), "model.d_norm",
         f"must be batch, layer or none, got {c.model.d_norm!r}")
  _check(c.model.dtype in ("float32", "bfloat16"), "model.dtype",
         f"must be float32 or bfloat16, got {c.model.dtype!r}")
  _check(c.model.z_dim >= 1, "model.z_dim", f"must be ≥ 1, got {c.model.z_dim}")
  _check(c.model.channels >= 1, "model.channels", f"must be ≥ 1, got {c.model.channels}")
  _check(0 <= c.model.dropout < 1, "model.dropout", f"must be in [0, 1), got {c.model.dropout}")
  from igan_jax.losses import LOSSES
  _check(c.loss.name in LOSSES, "loss.name", f"must be one of {LOSSES}, got {c.loss.name!r}")
  _check(c.loss.gp_weight >= 0, "loss.gp_weight", f"must be ≥ 0, got {c.loss.gp_weight}")
  _check(c.loss.noise_std >= 0, "loss.noise_std", f"must be ≥ 0, got {c.loss.noise_std}")
  _check(c.optim.schedule in ("igan_decay", "constant"), "optim.schedule",
         f"must be igan_decay or constant, got {c.optim.schedule!r}")
  for key in ("d_init_lr", "d_end_lr", "g_lr_ratio", "decay_steps"):
    _check(c.optim[key] > 0, f"optim.{key}", f"must be > 0, got {c.optim[key]}")
  _check(c.optim.d_end_lr <= c.optim.d_init_lr, "optim.d_end_lr",
         f"must be ≤ optim.d_init_lr ({c.optim.d_init_lr}), got {c.optim.d_end_lr}")
  _check(0 < c.optim.gamma <= 1, "optim.gamma", f"must be in (0, 1], got {c.optim.gamma}")
  _check(0 <= c.optim.b1 < 1 and 0 <= c.optim.b2 < 1, "optim.b1/b2",
         f"must be in [0, 1), got {c.optim.b1}, {c.optim.b2}")
  return c


def load_config(path: str, arg: str | None = None,
                check: bool = True) -> ml_collections.ConfigDict:
  """Loads `get_config(arg)` from a config file (as `--config=path[:arg]` does); validates it
  unless check=False."""
  if ":" in path and arg is None and not os.path.exists(path):
    path, arg = path.split(":", 1)
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path!r} does not exist; pass e.g. experiments/fashion_mnist.py")
  spec = importlib.util.spec_from_file_location("_igan_jax_config", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigError(f"config file {path} has a syntax error at line {e.lineno}: {e.msg}") from e
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path} defines no get_config(); see experiments/mnist.py")
  try:
    config = module.get_config(arg) if arg is not None else module.get_config()
  except ValueError as e:  # e.g. an unknown variant after ':'
    raise ConfigError(f"config file {path}: {e}") from e
  return validate(config) if check else config


def has_key(config: ml_collections.ConfigDict, dotted: str) -> bool:
  node = config
  for part in dotted.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False
    node = node[part]
  return True
