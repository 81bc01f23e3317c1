"""LSUN bedroom at 96×96×3 (docs/paper.md §3) with the paper's recipe (docs/paper.md §2) and the
models that fit it.

Data: TFDS's `lsun/bedroom`, read from the original LMDB archives and centre-cropped and resized
once to 96×96 into a prepared dataset (docs/paper.md §3; igan_jax/data/lsun.py). Offline, put
bedroom_train_lmdb.zip (and, for igan_v2, church_outdoor_train_lmdb.zip) from
http://dl.yf.io/lsun/scenes/ in the TFDS manual dir, then

    python -m igan_jax.data.prepare --dataset=lsun/bedroom
    python -m igan_jax.data.prepare --dataset=lsun/bedroom+lsun/church_outdoor   # igan_v2

(training runs this itself when the data is not prepared). The ~3 M bedrooms are ~84 GB as uint8:
data.stream="auto" streams them from the prepared shards with prefetch.

Command:

    python -m igan_jax.main --config=experiments/lsun_bedroom.py --workdir=runs/lsun_bedroom
    python -m igan_jax.main --config=experiments/lsun_bedroom.py:<variant> \
        --workdir=runs/lsun_bedroom_<variant>

Variants: igan (default), igan_v2, igan_paper, dcgan, wgan_gp (igan_jax/config.py
apply_variant). igan_vn is
refused: the data here has at most two classes, which is igan_v2.
- igan_v2 (docs/paper.md §1.2, N = 2): the paper ran it on LSUN without naming a second class; ours
  is data.name = TWO_CLASS_LSUN = lsun/bedroom+lsun/church_outdoor: class 0 = bedroom, class 1 =
  church_outdoor (an outdoor scene, clearly distinct from bedrooms, the usual second LSUN category
  of GAN papers, and 126k images; igan_jax/data/core.py).
- dcgan, wgan_gp: the baselines (docs/paper.md §1.4) with their own papers' recipes, at 96.

Learning rate: docs/paper.md §2 gives the decay 0.002 → 0.0002 for the simple datasets (the paper,
§3.2: starting at 0.0002 there lets D's loss collapse) and states no learning rate for CelebA or
LSUN. `igan_paper` keeps the only schedule the paper states (the base config's); `igan`,
`igan_v2` and `igan_vn` train with the measured recipe's constant 0.0002 (G 0.0003), chosen on
Fashion-MNIST (docs/ablation.md) and not yet measured at 96×96.

Expected time per 1,000 iterations: as experiments/celeba.py (the same 96×96×3 shapes; on 2 CPU
cores igan about 2 h, dcgan about 45 min); measurements in docs/speed.md.
"""
from igan_jax.config import apply_variant, base_config
from igan_jax.data import TWO_CLASS_LSUN

CHOICES = ("igan", "igan_v2", "igan_paper", "dcgan", "wgan_gp")


def get_config(arg: str | None = None):
  arg = arg or "igan"
  if arg not in CHOICES:
    why = (" (igan_vn needs at least 3 labelled classes; this data has 1, or 2 for igan_v2)"
           if arg == "igan_vn" else "")
    raise ValueError(f"unknown variant {arg!r}{why}; "
                     f"choose one of {', '.join(CHOICES)}")
  config = base_config()
  # One class (bedroom) for the single-image models; bedroom vs church_outdoor for igan_v2.
  config.data.name = TWO_CLASS_LSUN if arg == "igan_v2" else "lsun/bedroom"
  config.data.resolution = 96  # docs/paper.md §3
  config = apply_variant(config, arg)
  if config.model.name == "igan_v2":
    config.data.classes = (0, 1)  # bedroom, church_outdoor: the order of TWO_CLASS_LSUN
  return config
