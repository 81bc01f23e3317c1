"""Configuration: the paper's defaults, validation with one-line errors, and loading config files.

Every paper item is a config value whose default is the paper's; values the paper
does not give are marked "R" (our reconstruction, docs/ablation.md for the measured ones) or "ours".
"""
from __future__ import annotations

import importlib.util
import os

import ml_collections

from igan_jax import data as data_lib
from igan_jax.errors import ConfigError  # re-exported: config.ConfigError
from igan_jax.evaluation import settings as eval_settings

LOOPS = ("auto", "python", "scan")
# = igan_jax.models.MODELS and supported_resolutions() (tests/test_models.py pins that), kept
# here so that a config error is reported before JAX and Flax are imported (~3 s).
MODELS = ("igan", "igan_v2", "igan_vn", "dcgan", "wgan_gp")
RESOLUTIONS = (28, 96)
GP_BN = ("batch", "running")             # = the choices train._d_update implements
D_BN_BATCH = ("separate", "joint")
UPSAMPLE_INITS = ("default", "icnr")     # = igan_jax.models.igan.UPSAMPLE_INITS
SKIP_UPSAMPLES = ("patch", "resize")     # = igan_jax.models.igan.SKIP_UPSAMPLES
MAIN_UPSAMPLES = ("subpixel", "resize")  # = igan_jax.models.igan.MAIN_UPSAMPLES


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0                       # the paper's training recipe: every random number seeded
  c.num_iterations = 20_000        # ours: the paper does not state its run length
  c.batch_size = 64                # the paper's experiments
  c.n_critic = 3                   # the paper's training recipe: D trained 3-5 times per G step
  c.checkpoint_every = 100         # the paper's experiments: weights saved every 100 steps
  c.log_every = 30                 # the paper's experiments: losses recorded every 30 steps
  c.sample_every = 100             # the paper's experiments: a sample grid every 100 steps
  c.keep_checkpoints = 3
  c.num_samples = 64               # images in a sample grid (fixed z)
  # How train_steps runs k iterations: "python" (a loop of jitted steps) or "scan" (one compiled
  # lax.scan). "auto" = python on CPU, scan elsewhere: on XLA:CPU the scan ran ~10× slower, on a
  # GPU it cost nothing (measured against the PyTorch reference implementation).
  c.loop = "auto"
  c.ema_decay = 0.0                # ours, not in the paper: EMA of G's weights when > 0
  # Data parallelism (ours, igan_jax/parallel.py): the devices of the `data` mesh, 0 = all,
  # else the first N. batch_size stays the global batch; the devices must divide it.
  c.num_devices = 0
  # Robustness (ours). A non-finite loss or gradient rolls back to the last good checkpoint
  # with a fresh fold of the rng, at most max_rollbacks times.
  c.max_rollbacks = 3
  # The paper: "if D's loss rapidly approaches 0, stop, adjust, retrain": warn when D's adversarial
  # loss stays below collapse_threshold for collapse_patience logged windows; optionally stop.
  c.collapse_threshold = 1e-3
  c.collapse_patience = 3
  c.stop_on_collapse = False
  # FID during training (ours; the paper evaluates only at the end): every eval_every iterations
  # (0 = off) on eval.train_num_samples images with the cheapest available backbone; the best
  # generator so far is kept in checkpoints/best/.
  c.eval_every = 0
  # Derived, not an input: the model's class count (1, or N for igan_v2/vn), set by validate()
  # from model.name and model.num_classes; the trainer and the data read it from here.
  c.num_classes = 1

  # `--mode=evaluate` and FID during training (igan_jax/evaluation/; checked by its settings.py).
  c.eval = ml_collections.ConfigDict()
  c.eval.num_samples = 10_000      # the paper's experiments: 10,000 generated vs 10,000 real
  c.eval.seeds = 3                 # mean ± sd over latent seeds 0..seeds-1
  c.eval.backbones = "classifier,inception"  # those that apply to the dataset are used
  c.eval.inception_samples = 0     # N for Inception (0 = num_samples); ~6.5 img/s on 2 CPU cores
  c.eval.batch_size = 500
  c.eval.inception_batch_size = 50
  c.eval.use_ema = False           # evaluate the EMA generator (needs ema_decay > 0)
  c.eval.train_num_samples = 2_000 # N for FID during training (compare only at equal N)
  c.eval.train_backbone = "auto"   # "auto" = classifier for 28×28 labelled data, else inception

  c.data = ml_collections.ConfigDict()
  c.data.name = "fashion_mnist"
  c.data.split = "train"
  c.data.resolution = 28           # 28 native, or 96 (resized once; the paper's generator R)
  c.data.data_dir = ""             # "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
  c.data.manual_dir = ""           # "" = <data_dir>/downloads/manual
  # igan_v2 / igan_vn: which dataset labels are the model's classes 0..N-1 (() = labels 0..N-1).
  c.data.classes = ()
  # Data too large for device memory streams from the host with prefetch (igan_jax/data/stream):
  # "auto" streams when the uint8 training set is larger than data.max_resident_mb.
  c.data.stream = "auto"           # "auto" | "resident" | "stream"
  c.data.max_resident_mb = 4096

  c.model = ml_collections.ConfigDict()
  c.model.name = "igan"
  c.model.z_dim = 100              # the paper's generator
  c.model.channels = 64            # the paper's generator
  c.model.dropout = 0.2            # R: "dropout in some layers"
  c.model.dropout_blocks = 2       # R: which layers: after the first this many main-path blocks
  c.model.upsample_init = "default"  # ours: PixelShuffle convs' init, "default" | "icnr"
  c.model.skip_upsample = "patch"  # R: IGAN's shortcut / branch up-sampler, "patch" | "resize"
  c.model.main_upsample = "subpixel"  # the paper's main path; "resize": ours (models/igan.py)
  c.model.bn_momentum = 0.9        # ours (PyTorch's 0.1 update): running stats track quickly
  c.model.bn_epsilon = 1e-5
  c.model.d_widths = ()            # () = the default for the resolution (discriminator.py)
  c.model.d_norm = "batch"         # the paper's discriminator: BN; "layer" | "none" selectable
  c.model.d_input_norm = True      # R: the norm on D's input block too (False: DCGAN's rule)
  c.model.g_output_norm = True     # the paper's generator: BN between G's output conv and tanh
  c.model.dtype = "float32"        # "bfloat16" computes in bf16, params stay float32
  c.model.num_classes = 0          # igan_vn's N (0 = 10; igan_v2 is N = 2), the paper's IGAN_V2/VN
  # How igan_v2/vn run their N stacked heads and discriminators (models/igan_vn.py): "vmap",
  # "unroll" or "auto" (unroll on CPU, where vmapped convolutions ran ~13× slower; vmap elsewhere).
  c.model.class_stack = "auto"
  c.model.critic_norm = "none"     # WGAN-GP critic: none (their §4) | layer

  c.loss = ml_collections.ConfigDict()
  c.loss.name = "least_squares"    # the paper's training recipe: "log removed"; "bce" keeps it
  c.loss.real_label = 0.9          # α, the paper's label smoothing (R: value)
  c.loss.fake_label = 0.1          # β
  c.loss.gp_weight = 5.0           # λ, the paper's training recipe and experiments
  c.loss.noise_std = 0.1           # instance noise on both D inputs (reconstructed value)
  c.loss.noise_anneal = 0          # R: σ falls linearly to 0 over this many steps (0 = constant)
  c.loss.gp_center = 1.0           # R: eq. 12 lost; E[(‖∇D(x̂)‖ − gp_center)²]
  c.loss.gp_bn = "batch"           # ours: D's BN in the penalty's pass, "batch" | "running"
  c.loss.d_bn_batch = "separate"   # ours: D's BN over "separate" real/fake batches, or "joint"

  c.optim = ml_collections.ConfigDict()
  c.optim.schedule = "igan_decay"  # or "constant"
  c.optim.d_init_lr = 0.002        # the paper's training recipe: simple datasets start at 0.002 ...
  c.optim.d_end_lr = 0.0002        # ... and decay to 0.0002
  c.optim.gamma = 0.5              # R: eq. 6 lost
  c.optim.decay_steps = 1000       # R: eq. 6's init_set
  c.optim.g_lr_ratio = 1.5         # the paper's training recipe: G lr = 1.5 × D lr
  c.optim.b1 = 0.5                 # ours (DCGAN's); the paper says only "Adam"
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  return c


VARIANTS = ("igan", "igan_v2", "igan_vn", "igan_paper", "dcgan", "wgan_gp")

# The IGAN recipe chosen by measurement on real Fashion-MNIST (docs/ablation.md): what igan,
# igan_v2 and igan_vn train with. base_config() keeps the paper's stated values and our first
# reconstruction of the open ones; `igan_paper` trains with those. Each value below is one
# override away from its base_config() value.
MEASURED_RECIPE = {
    # Open in the paper (reconstructions replaced):
    "model.d_input_norm": False,    # was True: D's input-block batch norm could not see a
                                    # checkerboard or a brightness offset shared by a batch
    "loss.gp_center": 0.0,          # was 1.0
    "loss.gp_bn": "running",        # was "batch": the penalty now penalises a per-sample D
    "loss.fake_label": 0.0,         # was 0.1: one-sided smoothing (Salimans et al. 2016 §3.4)
    "loss.noise_anneal": 500,       # was 0 (constant σ = 0.1)
    "model.upsample_init": "icnr",  # was "default"
    # Stated by the paper, changed because they are measured causes (docs/ablation.md):
    "optim.schedule": "constant",   # was igan_decay 0.002 → 0.0002 (a spike at step 570)
    "optim.d_init_lr": 2e-4,        # G: 1.5 × this, as stated
    "optim.d_end_lr": 2e-4,
    "model.dropout": 0.0,           # was 0.2 ("dropout in some layers")
    "model.g_output_norm": False,   # was True ("Conv + BN + tanh"): grey, blurred samples
    # Stated, changed for the budget: ~2.3× cheaper per iteration, and at equal wall-clock a
    # better classifier FID than 3 (docs/ablation.md §5).
    # Not measured on igan_v2 / igan_vn, which take it to keep one recipe.
    "n_critic": 1,                  # was 3 ("D trained 3-5 times per G step")
}


def apply_overrides(c: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
  """Sets dotted keys ("loss.gp_center") of c; every key must exist."""
  for dotted, value in values.items():
    *path, last = dotted.split(".")
    node = c
    for part in path:
      node = node[part]
    if last not in node:
      raise KeyError(f"no config key {dotted!r}")
    node[last] = value
  return c


def apply_variant(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """Sets the model and its own recipe: `--config=experiments/<data>.py:<variant>`.

  igan: the paper's model with the measured recipe (MEASURED_RECIPE, docs/ablation.md): the
    base_config() values, with the values the paper leaves open chosen by measurement and
    stated ones changed where they were measured causes of failure (the 0.002 learning rate,
    dropout, and the batch norm before the generator's tanh) or cost more than they gave
    (n_critic 3 → 1); each one override away.
  igan_paper: the same model with base_config() as it is: the paper's stated values and our
    first reconstruction of the open ones (what `igan` was before the measurements).
  igan_v2 / igan_vn: the class-stacked generator and one discriminator per class (IGAN_V2/VN)
    with igan's measured recipe; N = 2 / model.num_classes (default 10). The classes are the
    dataset's labels listed in data.classes (the experiment files choose them).
  dcgan: Radford et al. 2015 §3–4: BCE with hard 1/0 labels, Adam lr 2e-4, β1 = 0.5, batch norm
    in both nets, one D update per G update, no penalty, no instance noise, constant lr.
  wgan_gp: Gulrajani et al. 2017, Algorithm 1: Wasserstein loss, λ = 10, n_critic = 5,
    Adam lr 1e-4, β = (0, 0.9), no batch norm in the critic, constant lr.
  """
  arg = arg or "igan"
  if arg not in VARIANTS:
    raise ValueError(f"unknown variant {arg!r}; available: {', '.join(VARIANTS)}")
  c.model.name = "igan" if arg == "igan_paper" else arg
  if arg in ("igan", "igan_v2", "igan_vn"):
    apply_overrides(c, MEASURED_RECIPE)
  if arg in ("igan_v2", "igan_vn"):
    c.model.num_classes = 2 if arg == "igan_v2" else (c.model.num_classes or 10)
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
  _check(isinstance(c.num_devices, int) and not isinstance(c.num_devices, bool)
         and c.num_devices >= 0, "num_devices",
         f"must be an integer ≥ 0 (0 = all devices), got {c.num_devices!r}")
  _check(data_lib.is_supported(c.data.name), "data.name",
         f"unknown dataset {c.data.name!r}; supported: {', '.join(data_lib.SUPPORTED)}, "
         "lsun/<category>, folder:/abs/path")
  _check(c.data.resolution in RESOLUTIONS, "data.resolution",
         f"must be one of {RESOLUTIONS}, got {c.data.resolution!r}")
  _check(c.model.name in MODELS, "model.name",
         f"unknown model {c.model.name!r}; choose one of {', '.join(MODELS)}")
  c.num_classes = _check_classes(c)
  _check(c.data.stream in ("auto", "resident", "stream"), "data.stream",
         f"must be auto, resident or stream, got {c.data.stream!r}")
  _check(c.data.max_resident_mb > 0, "data.max_resident_mb",
         f"must be > 0, got {c.data.max_resident_mb}")
  _check(c.model.critic_norm in ("none", "layer"), "model.critic_norm",
         f"must be none or layer, got {c.model.critic_norm!r}")
  _check(isinstance(c.eval_every, int) and c.eval_every >= 0, "eval_every",
         f"must be an integer ≥ 0 (0 = off), got {c.eval_every!r}")
  try:
    eval_settings.settings(c)  # config.eval: checked where the evaluation defines it
  except eval_settings.SettingsError as e:
    raise ConfigError(str(e)) from None
  _check(c.model.d_norm in ("batch", "layer", "none"), "model.d_norm",
         f"must be batch, layer or none, got {c.model.d_norm!r}")
  _check(c.model.dtype in ("float32", "bfloat16"), "model.dtype",
         f"must be float32 or bfloat16, got {c.model.dtype!r}")
  _check(c.model.z_dim >= 1, "model.z_dim", f"must be ≥ 1, got {c.model.z_dim}")
  _check(c.model.channels >= 1, "model.channels", f"must be ≥ 1, got {c.model.channels}")
  _check(0 <= c.model.dropout < 1, "model.dropout", f"must be in [0, 1), got {c.model.dropout}")
  from igan_jax.losses import LOSSES  # late: loads JAX; a bad value above fails before it
  _check(c.loss.name in LOSSES, "loss.name", f"must be one of {LOSSES}, got {c.loss.name!r}")
  _check(c.loss.gp_weight >= 0, "loss.gp_weight", f"must be ≥ 0, got {c.loss.gp_weight}")
  _check(c.loss.noise_std >= 0, "loss.noise_std", f"must be ≥ 0, got {c.loss.noise_std}")
  _check(isinstance(c.loss.noise_anneal, int) and c.loss.noise_anneal >= 0, "loss.noise_anneal",
         f"must be an integer ≥ 0 (0 = constant noise), got {c.loss.noise_anneal!r}")
  _check(c.loss.gp_center >= 0, "loss.gp_center", f"must be ≥ 0, got {c.loss.gp_center}")
  _check(c.loss.gp_bn in GP_BN, "loss.gp_bn", f"must be one of {GP_BN}, got {c.loss.gp_bn!r}")
  _check(c.loss.d_bn_batch in D_BN_BATCH, "loss.d_bn_batch",
         f"must be one of {D_BN_BATCH}, got {c.loss.d_bn_batch!r}")
  _check(isinstance(c.model.dropout_blocks, int) and c.model.dropout_blocks >= 0,
         "model.dropout_blocks", f"must be an integer ≥ 0, got {c.model.dropout_blocks!r}")
  _check(isinstance(c.model.g_output_norm, bool), "model.g_output_norm",
         f"must be True or False, got {c.model.g_output_norm!r}")
  _check(isinstance(c.model.d_input_norm, bool), "model.d_input_norm",
         f"must be True or False, got {c.model.d_input_norm!r}")
  _check(c.model.upsample_init in UPSAMPLE_INITS, "model.upsample_init",
         f"must be one of {UPSAMPLE_INITS}, got {c.model.upsample_init!r}")
  _check(c.model.skip_upsample in SKIP_UPSAMPLES, "model.skip_upsample",
         f"must be one of {SKIP_UPSAMPLES}, got {c.model.skip_upsample!r}")
  _check(c.model.skip_upsample == "patch" or c.model.name == "igan", "model.skip_upsample",
         f"'resize' is built for the igan generator only; {c.model.name} takes 'patch'")
  _check(c.model.main_upsample in MAIN_UPSAMPLES, "model.main_upsample",
         f"must be one of {MAIN_UPSAMPLES}, got {c.model.main_upsample!r}")
  _check(c.model.main_upsample == "subpixel" or c.model.name == "igan", "model.main_upsample",
         f"'resize' is built for the igan generator only; {c.model.name} takes 'subpixel'")
  _check(c.optim.schedule in ("igan_decay", "constant"), "optim.schedule",
         f"must be igan_decay or constant, got {c.optim.schedule!r}")
  for key in ("d_init_lr", "d_end_lr", "g_lr_ratio", "decay_steps"):
    _check(c.optim[key] > 0, f"optim.{key}", f"must be > 0, got {c.optim[key]}")
  _check(c.optim.d_end_lr <= c.optim.d_init_lr, "optim.d_end_lr",
         f"must be ≤ optim.d_init_lr ({c.optim.d_init_lr}), got {c.optim.d_end_lr}")
  # Below ~1e-30 γ^(t/decay_steps) underflows float32 at once: the lr would jump to d_end_lr.
  _check(1e-30 <= c.optim.gamma <= 1, "optim.gamma",
         f"must be in [1e-30, 1], got {c.optim.gamma}")
  _check(0 <= c.optim.b1 < 1 and 0 <= c.optim.b2 < 1, "optim.b1/b2",
         f"must be in [0, 1), got {c.optim.b1}, {c.optim.b2}")
  return c


def _check_classes(c) -> int:
  """igan_v2/vn: N, the class-stack mode and data.classes must fit the model and the dataset;
  returns the model's class count (1 for the one-class models)."""
  _check(isinstance(c.model.num_classes, int) and c.model.num_classes >= 0, "model.num_classes",
         f"must be an integer ≥ 0 (0 = the model's default), got {c.model.num_classes!r}")
  if c.model.name not in ("igan_v2", "igan_vn"):
    return 1
  # Late: models load JAX and Flax (seconds); config errors before this point fail without them.
  from igan_jax import models
  from igan_jax.models.igan_vn import STACK_IMPLS
  _check(c.model.class_stack in STACK_IMPLS, "model.class_stack",
         f"must be one of {STACK_IMPLS}, got {c.model.class_stack!r}")
  try:
    n = models.num_classes(c.model)
  except ValueError as e:
    raise ConfigError(f"config.model.num_classes: {e}") from None
  _check(n >= 2, "model.num_classes", f"{c.model.name} needs at least 2 classes, got {n}")
  available = data_lib.num_classes(c.data.name)
  classes = tuple(c.data.classes) or tuple(range(n))
  _check(len(classes) == n, "data.classes",
         f"{c.model.name} has {n} classes, so data.classes needs {n} labels, got {classes}")
  _check(len(set(classes)) == n and all(isinstance(k, int) and 0 <= k < available
                                        for k in classes), "data.classes",
         f"must be {n} distinct labels of {c.data.name} (0..{available - 1}), got {classes}")
  return n


def load_config(path: str, arg: str | None = None,
                check: bool = True) -> ml_collections.ConfigDict:
  """Loads `get_config(arg)` from a config file (as `--config=path[:arg]` does); validates it
  unless check=False."""
  if ":" in path and arg is None and not os.path.exists(path):
    path, arg = path.split(":", 1)
  if not os.path.isfile(path):
    raise ConfigError(f"config file {path!r} does not exist; "
                      "pass e.g. experiments/fashion_mnist.py")
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


def from_saved(saved: dict) -> ml_collections.ConfigDict:
  """The validated config of a workdir's config.json. Keys that the run's version of the
  package did not have yet take base_config()'s values, which are the behaviour of the code
  before those keys existed (the recipe choices added later default to the old behaviour)."""
  config = base_config()

  def merge(node, values):
    for key, value in values.items():
      if isinstance(value, dict) and isinstance(node.get(key), ml_collections.ConfigDict):
        merge(node[key], value)
      else:
        with node.ignore_type():
          node[key] = tuple(value) if isinstance(value, list) else value
  merge(config, saved)
  return validate(config)


def has_key(config: ml_collections.ConfigDict, dotted: str) -> bool:
  node = config
  for part in dotted.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False
    node = node[part]
  return True
