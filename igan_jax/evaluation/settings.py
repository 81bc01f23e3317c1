"""The evaluation settings (config.eval): their defaults, and the one place they are checked.

`settings(config, **overrides)` resolves every key — an override that is not None, else
config.eval, else `DEFAULTS` — and raises `SettingsError` naming the first bad one. It is what
config.validate runs on config.eval (so a bad value is reported when the config loads, before
anything starts), what `--mode=evaluate` runs on its arguments, and what FID during training
reads its N and backbone choice from. It imports nothing heavy (no JAX, no numpy), so config.py
can use it before anything starts.
"""
from __future__ import annotations

import numbers

from igan_jax.errors import UserError

BACKBONES = ("classifier", "inception")
TRAIN_BACKBONES = ("auto",) + BACKBONES
DEFAULTS = dict(
    num_samples=10_000,        # the paper's experiments: 10,000 generated vs 10,000 real
    seeds=3,                   # latent seeds 0..seeds-1 (or an explicit list)
    backbones=BACKBONES,
    inception_samples=0,       # N for the Inception backbone; 0 = num_samples
    batch_size=500,            # generator and classifier batch
    inception_batch_size=50,
    use_ema=False,             # evaluate the EMA generator (needs config.ema_decay > 0)
    kid_subsets=100,
    kid_subset_size=1000,
    pr_k=3,                    # Kynkäänniemi et al. 2019
    dc_k=5,                    # Naeem et al. 2020
    train_num_samples=2_000,   # FID during training: N (compare only at equal N)
    train_backbone="auto",     # FID during training: "auto" | "classifier" | "inception"
)
INTEGER_KEYS = ("num_samples", "inception_samples", "batch_size", "inception_batch_size",
                "kid_subsets", "kid_subset_size", "pr_k", "dc_k", "train_num_samples")


class EvaluationError(UserError, RuntimeError):
  """The evaluation cannot run as asked; str(e) says what to do."""


class SettingsError(UserError, ValueError):
  """A bad evaluation setting (config.eval or an argument); str(e) names the key and the fix."""


def _is_int(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check(cond: bool, key: str, msg: str):
  if not cond:
    raise SettingsError(f"config.eval.{key}: {msg}")


def settings(config, **overrides) -> dict:
  """The evaluation settings: `overrides` that are not None, else config.eval, else DEFAULTS.

  Returns a dict with every DEFAULTS key: seeds as a list of ints, backbones as a tuple of
  distinct names, the counts as ints. Raises TypeError for an override that is not a setting
  and SettingsError for a bad value.
  """
  unknown = set(overrides) - set(DEFAULTS)
  if unknown:
    raise TypeError(f"unknown evaluation settings {sorted(unknown)}")
  ev = config.get("eval", None) if hasattr(config, "get") else None
  out = {}
  for key, default in DEFAULTS.items():
    value = overrides.get(key)
    if value is None and ev is not None:
      value = ev.get(key, None)
    out[key] = default if value is None else value

  seeds = out["seeds"]
  if _is_int(seeds):
    _check(seeds >= 1, "seeds", f"must be ≥ 1 (the number of latent seeds), got {seeds}")
    out["seeds"] = list(range(int(seeds)))
  else:
    _check(isinstance(seeds, (list, tuple)) and len(seeds) >= 1
           and all(_is_int(s) for s in seeds), "seeds",
           f"must be a count or a list of ints, got {seeds!r}")
    out["seeds"] = [int(s) for s in seeds]
  backbones = out["backbones"]
  if isinstance(backbones, str):
    backbones = tuple(b.strip() for b in backbones.split(",") if b.strip())
  _check(len(backbones) >= 1 and all(b in BACKBONES for b in backbones), "backbones",
         f"must be some of {BACKBONES}, got {tuple(backbones)!r}")
  out["backbones"] = tuple(dict.fromkeys(backbones))
  for key in INTEGER_KEYS:
    _check(_is_int(out[key]), key, f"must be an integer, got {out[key]!r}")
    out[key] = int(out[key])
  _check(out["num_samples"] >= 10, "num_samples", f"must be ≥ 10, got {out['num_samples']}")
  _check(out["inception_samples"] == 0 or out["inception_samples"] >= 10, "inception_samples",
         f"must be 0 (= num_samples) or ≥ 10, got {out['inception_samples']}")
  for key in ("batch_size", "inception_batch_size", "kid_subsets", "pr_k", "dc_k"):
    _check(out[key] >= 1, key, f"must be ≥ 1, got {out[key]}")
  _check(out["kid_subset_size"] >= 2, "kid_subset_size",
         f"must be ≥ 2, got {out['kid_subset_size']}")
  _check(out["train_num_samples"] >= 10, "train_num_samples",
         f"must be an integer ≥ 10, got {out['train_num_samples']!r}")
  _check(out["train_backbone"] in TRAIN_BACKBONES, "train_backbone",
         f"must be auto, classifier or inception, got {out['train_backbone']!r}")
  out["use_ema"] = bool(out["use_ema"])
  return out


def samples_for(backbone: str, s: dict) -> int:
  """N for `backbone` under settings `s`: inception_samples for Inception when set."""
  if backbone == "inception" and s["inception_samples"]:
    return s["inception_samples"]
  return s["num_samples"]
