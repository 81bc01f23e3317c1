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

Measured time per 1,000 iterations on CPU (2-core AMD EPYC Zen 5, batch 64, fp32,
benchmarks/throughput.py, README "Speed"): igan 14 min (1.22 it/s), igan_v2 41 min
(0.410 it/s), igan_vn 3.1 h (0.089 it/s; 95 s to compile), dcgan 1.2 min (12.3–14.6 it/s),
wgan_gp 6.7 min (2.48 it/s), measured on Fashion-MNIST, which has MNIST's shapes. GPU: not measured
(no GPU was available).
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
