"""Fashion-MNIST at 28×28, every model of the family (IGAN's measured recipe, docs/ablation.md).

Command (prepares TFDS `fashion_mnist` offline from Debian's package on first use):

    python -m igan_jax.main --config=experiments/fashion_mnist.py --workdir=runs/fashion_mnist
    python -m igan_jax.main --config=experiments/fashion_mnist.py:<variant> \
        --workdir=runs/fashion_mnist_<variant>

Variants (igan_jax/config.py apply_variant): igan (default), igan_v2, igan_vn, igan_paper, dcgan,
wgan_gp.
- igan_v2 (docs/paper.md §1.2, N = 2): T-shirt/top (label 0) and Sneaker (label 7) as classes 0
  and 1 (data.classes). The paper does not say which two classes it used; these two have nothing in
  common in silhouette (a wide upper-body garment filling the frame vs a low, flat shoe in its
  lower half) nor in texture, so each head's row of a sample grid is unambiguous, while the
  similar pairs (T-shirt/Shirt/Pullover/Coat, Sneaker/Sandal/Ankle boot) would blur that. Other
  classes: --config.data.classes=(1,8) (Trouser, Bag).
- igan_vn (docs/paper.md §1.2): all ten classes, N = 10 (data.classes () = labels 0..N-1).
- igan_paper: igan with the paper's stated values and the first reading of the open ones.
- dcgan, wgan_gp: the baselines (docs/paper.md §1.4) with their own papers' recipes.

Expected time per 1,000 iterations on 2 CPU cores: igan about 10-15 min, dcgan 1-3 min,
wgan_gp about 7 min, igan_v2 about 40 min, igan_vn about 3 h; the measurements, with their
machine and date, are in docs/speed.md and docs/ablation.md.
Resize to 96×96 instead: --config.data.resolution=96.
"""
from igan_jax.config import apply_variant, base_config

# igan_v2's two classes: Fashion-MNIST labels 0 (T-shirt/top) and 7 (Sneaker), see above.
V2_CLASSES = (0, 7)


def get_config(arg: str | None = None):
  config = base_config()
  config.data.name = "fashion_mnist"
  config.data.resolution = 28
  config = apply_variant(config, arg)
  if config.model.name == "igan_v2":
    config.data.classes = V2_CLASSES
  return config
