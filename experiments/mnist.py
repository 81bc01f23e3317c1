"""MNIST at 28×28 with the paper's recipe (docs/paper.md §2–3) and every model of the family.

Command (TFDS `mnist`: downloads when online; offline, put the four original files in the TFDS
manual dir — the error message names them and the path):

    python -m igan_jax.main --config=experiments/mnist.py --workdir=runs/mnist
    python -m igan_jax.main --config=experiments/mnist.py:<variant> --workdir=runs/mnist_<variant>

Variants (igan_jax/config.py apply_variant): igan (default), igan_v2, igan_vn, igan_paper, dcgan,
wgan_gp.
- igan_v2 (docs/paper.md §1.2, N = 2): digits 0 and 1 as classes 0 and 1 (data.classes). The paper
  does not say which two classes it used; 0 and 1 are the most different shapes of the ten (a closed
  loop and a single stroke), so a sample grid shows at a glance whether each head draws its own
  class, and they are the two largest classes (5,923 and 6,742 training images). Other digits:
  --config.data.classes=(3,8).
- igan_vn (docs/paper.md §1.2): all ten digits, N = 10 (data.classes () = labels 0..N-1).
- dcgan, wgan_gp: the baselines (docs/paper.md §1.4) with their own papers' recipes.

Expected time per 1,000 iterations on 2 CPU cores: as experiments/fashion_mnist.py (the same
shapes): igan about 10-15 min, dcgan 1-3 min, igan_vn about 3 h; measurements in docs/speed.md.
Resize to 96×96 instead: --config.data.resolution=96.
"""
from igan_jax.config import apply_variant, base_config

# igan_v2's two classes: MNIST labels, the model's classes 0 and 1 (see above).
V2_CLASSES = (0, 1)


def get_config(arg: str | None = None):
  config = base_config()
  config.data.name = "mnist"
  config.data.resolution = 28
  config = apply_variant(config, arg)
  if config.model.name == "igan_v2":
    config.data.classes = V2_CLASSES
  return config
