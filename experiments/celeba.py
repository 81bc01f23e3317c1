"""CelebA at 96×96×3 (docs/paper.md §3) with the paper's recipe (docs/paper.md §2) and the models
that fit it.

Data: TFDS `celeb_a`, cropped and resized once to 96×96 into a prepared dataset (docs/paper.md
§3: "pre-processed once, ahead of training"; recipe in igan_jax/data/imageproc.py). Offline, put
the five original files (img_align_celeba.zip, list_attr_celeba.txt, list_eval_partition.txt,
list_landmarks_align_celeba.txt, identity_CelebA.txt) in the TFDS manual dir, then

    python -m igan_jax.data.prepare --dataset=celeb_a

(training runs this itself when the data is not prepared). The 162,770 training images are
4.5 GB as uint8, over data.max_resident_mb, so data.stream="auto" streams them from the host.

Command:

    python -m igan_jax.main --config=experiments/celeba.py --workdir=runs/celeba
    python -m igan_jax.main --config=experiments/celeba.py:<variant> --workdir=runs/celeba_<variant>

Variants: igan (default), igan_v2, igan_paper, dcgan, wgan_gp (igan_jax/config.py
apply_variant). igan_vn is
refused: CelebA's labels here are one binary attribute, two classes, which is igan_v2.
- igan_v2 (docs/paper.md §1.2, N = 2): the paper ran it on CelebA without naming its classes; ours
  are the attribute Male: class 0 = not Male, class 1 = Male (igan_jax/data/core.py
  CELEBA_LABEL): a balanced-enough split (~42% Male) that every face has, and one a viewer judges at
  a glance.
- dcgan, wgan_gp: the baselines (docs/paper.md §1.4) with their own papers' recipes, at 96.

Learning rate: docs/paper.md §2 gives the decay 0.002 → 0.0002 for the simple datasets (the paper,
§3.2: starting at 0.0002 there lets D's loss collapse) and states no learning rate for CelebA or
LSUN. `igan_paper` keeps the only schedule the paper states (the base config's); `igan`,
`igan_v2` and `igan_vn` train with the measured recipe's constant 0.0002 (G 0.0003), chosen on
Fashion-MNIST (docs/ablation.md) and not yet measured at 96×96.

Expected time per 1,000 iterations at 96×96 on 2 CPU cores: igan about 2 h (with the paper's
n_critic 3), dcgan about 45 min, wgan_gp about 3.5 h; a GPU is the machine for this dataset.
Measurements, with their machine and date: docs/speed.md.
"""
from igan_jax.config import apply_variant, base_config

CHOICES = ("igan", "igan_v2", "igan_paper", "dcgan", "wgan_gp")
# igan_v2's classes: the labels of celeb_a are the attribute Male (0 = not Male, 1 = Male).
V2_CLASSES = (0, 1)


def get_config(arg: str | None = None):
  arg = arg or "igan"
  if arg not in CHOICES:
    why = (" (igan_vn needs at least 3 labelled classes; CelebA's label, Male, has 2: use "
           "igan_v2)" if arg == "igan_vn" else "")
    raise ValueError(f"unknown variant {arg!r}{why}; "
                     f"choose one of {', '.join(CHOICES)}")
  config = base_config()
  config.data.name = "celeb_a"
  config.data.resolution = 96  # docs/paper.md §3
  config = apply_variant(config, arg)
  if config.model.name == "igan_v2":
    config.data.classes = V2_CLASSES
  return config
