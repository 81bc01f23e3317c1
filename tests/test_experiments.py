"""Every experiment file × every variant it offers: loads, validates, builds; trains, checkpoints
and resumes on mock data (issue 3, "Done when").

Fast part: each `experiments/<data>.py:<variant>` loads through `load_config` (as the CLI does),
carries its dataset, resolution, classes and recipe, and its generator and discriminator build at
the real widths (jax.eval_shape: shapes and parameter counts, no compute). `python
tests/test_experiments.py` prints the parameter table.

Slow part: a few iterations of `train.train_and_evaluate` on `tfds.testing.mock_data` with tiny
widths — 2 iterations, then the same workdir resumed to 4, compared bit for bit with 4 straight —
for every experiment file × variant (fashion_mnist:igan through the CLI in test_main.py).
"""
import functools
import json
import math
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from igan_jax import models  # noqa: E402
from igan_jax.config import (MEASURED_RECIPE, VARIANTS, ConfigError, base_config,  # noqa: E402
                             load_config)
from igan_jax.data import TWO_CLASS_LSUN, image_shape  # noqa: E402

ALL = ("igan", "igan_v2", "igan_vn", "igan_paper", "dcgan", "wgan_gp")
# igan_vn needs ≥ 3 labels
SINGLE_CLASS_DATA = ("igan", "igan_v2", "igan_paper", "dcgan", "wgan_gp")
EXPERIMENTS = {
    # file: (variants, data.name of the single-image models, resolution)
    "mnist": (ALL, "mnist", 28),
    "fashion_mnist": (ALL, "fashion_mnist", 28),
    "celeba": (SINGLE_CLASS_DATA, "celeb_a", 96),
    "lsun_bedroom": (SINGLE_CLASS_DATA, "lsun/bedroom", 96),
}
# igan_v2's two classes per file, and its dataset where it differs (the experiments' docstrings
# say why these).
V2_CLASSES = {"mnist": (0, 1), "fashion_mnist": (0, 7), "celeba": (0, 1), "lsun_bedroom": (0, 1)}
V2_DATA = {"lsun_bedroom": TWO_CLASS_LSUN}


def path_of(name):
  return os.path.join(ROOT, "experiments", f"{name}.py")


def cases():
  for name, (variants, _, _) in EXPERIMENTS.items():
    for variant in variants:
      yield name, variant


# --------------------------------------------------------------------------- configs


def test_every_variant_is_covered():
  assert set(ALL) == set(VARIANTS)  # a new variant in config.py must be added here
  assert sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "experiments"))
                if f.endswith(".py")) == sorted(EXPERIMENTS)


@pytest.mark.parametrize("name,variant", list(cases()))
def test_config_loads_and_validates(name, variant):
  _, data_name, res = EXPERIMENTS[name]
  c = load_config(path_of(name), variant)  # validates
  assert c.model.name == {"igan_paper": "igan"}.get(variant, variant)
  assert c.data.resolution == res
  if variant == "igan_v2":
    assert c.data.name == V2_DATA.get(name, data_name)
    assert tuple(c.data.classes) == V2_CLASSES[name] and models.num_classes(c.model) == 2
  else:
    assert c.data.name == data_name
  if variant == "igan_vn":  # all ten labels: () means 0..N-1 and N is 10
    assert tuple(c.data.classes) == () and models.num_classes(c.model) == 10
  if variant not in models.CLASS_STACKED:
    assert tuple(c.data.classes) == ()
  # Each variant keeps its own recipe (config.apply_variant) on every dataset.
  recipe = (c.loss.name, c.n_critic, c.optim.schedule, c.optim.d_init_lr, c.optim.b1)
  assert recipe == {"dcgan": ("bce", 1, "constant", 2e-4, 0.5),
                    "wgan_gp": ("wasserstein", 5, "constant", 1e-4, 0.0),
                    "igan_paper": ("least_squares", 3, "igan_decay", 0.002, 0.5)}.get(
                        variant, ("least_squares", 1, "constant", 2e-4, 0.5))  # docs/ablation.md
  # The IGAN family trains with the measured recipe, igan_paper with base_config() as it is.
  if variant in ("igan", "igan_v2", "igan_vn"):
    assert all(functools.reduce(lambda node, part: node[part], k.split("."), c) == v
               for k, v in MEASURED_RECIPE.items())
  if variant == "igan_paper":
    base = base_config()
    assert c.loss.to_dict() == base.loss.to_dict() and c.optim.to_dict() == base.optim.to_dict()
    assert c.model.to_dict() == base.model.to_dict()
  # The default variant is igan, also through "path:arg" with no arg.
  if variant == "igan":
    assert load_config(path_of(name)).to_dict() == c.to_dict()


@pytest.mark.parametrize("name", ("celeba", "lsun_bedroom"))
def test_igan_vn_and_unknown_variants_are_refused_with_the_choices(name):
  for variant, needle in (("igan_vn", "igan_vn needs at least 3"), ("stylegan", "'stylegan'")):
    with pytest.raises(ConfigError) as e:
      load_config(path_of(name), variant)
    msg = str(e.value)
    assert needle in msg and "choose one of igan, igan_v2, igan_paper, dcgan, wgan_gp" in msg, msg


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_docstring_gives_the_command_and_the_timing_line(name):
  with open(path_of(name)) as f:
    source = f.read()
  doc = source.split('"""')[1]
  assert f"python -m igan_jax.main --config=experiments/{name}.py --workdir=" in doc
  assert f"--config=experiments/{name}.py:<variant>" in doc
  assert "Expected time per 1,000 iterations" in doc
  assert "TBD" not in doc and re.search(r"\d+(-\d+)? (min|h)\b", doc)  # a time, not a placeholder
  assert "docs/speed.md" in doc  # where the measurements, with machine and date, live


# --------------------------------------------------------------------------- models build


def build(config, check_shapes=True):
  """(generator params, discriminator params, image shape) at the config's widths, traced only;
  with check_shapes also G's and D's outputs (tracing apply doubles the cost)."""
  res, _, ch = image_shape(config.data.name, config.data.resolution)
  g = models.build_generator(config.model, res, ch)
  d = models.build_discriminator(config.model, res)
  lead = (models.num_classes(config.model),) if config.model.name in models.CLASS_STACKED else ()
  z = jnp.zeros((2, config.model.z_dim))
  images = jnp.zeros(lead + (2, res, res, ch))
  gv = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), z, train=False))
  dv = jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), images, train=False))
  if check_shapes:
    assert jax.eval_shape(lambda v: g.apply(v, z, train=False), gv).shape == images.shape
    assert jax.eval_shape(lambda v: d.apply(v, images, train=False), dv).shape == lead + (2,)
  return models.param_count(gv["params"]), models.param_count(dv["params"]), (res, res, ch)


@functools.lru_cache(maxsize=None)
def param_table():
  """{(file, variant, resolution): (G params, D params)} at the experiments' real widths; the
  28×28 files also resized to 96 (their --config.data.resolution=96)."""
  rows = {}
  for name, variant in cases():
    c = load_config(path_of(name), variant)
    rows[name, variant, c.data.resolution] = build(c)[:2]
    if c.data.resolution == 28:
      c.data.resolution = 96
      rows[name, variant, 96] = build(c, check_shapes=False)[:2]
  return rows


@pytest.mark.parametrize("name,variant", list(cases()))
def test_models_build_at_the_real_widths(name, variant):
  rows = param_table()
  for (f, v, res), (gp, dp) in rows.items():
    if (f, v) == (name, variant):
      assert gp > 0 and dp > 0, (f, v, res)
  # N discriminators are N copies of IGAN's (docs/paper.md §1.2); the same data gives the same
  # counts.
  res = EXPERIMENTS[name][2]
  if variant in models.CLASS_STACKED:
    n = 2 if variant == "igan_v2" else 10
    assert rows[name, variant, res][1] == n * rows[name, "igan", res][1]


def test_files_of_the_same_shapes_build_the_same_models():
  rows = param_table()  # `python tests/test_experiments.py` prints it
  # The 28×28 files share their models; CelebA and LSUN share theirs (both 96×96×3).
  for v in ALL:
    assert rows["mnist", v, 28] == rows["fashion_mnist", v, 28]
  for v in SINGLE_CLASS_DATA:
    assert rows["celeba", v, 96] == rows["lsun_bedroom", v, 96]


# --------------------------------------------------------------------------- training

# The selected cases run in subprocesses (with the session's XLA flags, tests/conftest.py), so
# that JAX, TFDS and TensorFlow are imported once per process, not once per case. Per case, three
# runs share one compiled step: 2 iterations, the same workdir resumed to 4, and 4 straight in a
# second workdir.
RUNNER = r"""
import contextlib, io, json, os, sys, time, traceback
sys.modules["torch"] = None  # as a user's install runs: tests/helpers.py mock_main says why
import jax
import numpy as np
import tensorflow_datasets as tfds
from igan_jax import models, plots, train
from igan_jax.config import load_config, validate

# The loss plots a run refreshes at each checkpoint are counted, not drawn: matplotlib took ~1 s a
# plot, a quarter of these runs' time, and the plots read only metrics.jsonl, whatever the model
# (tests/test_plots.py draws them; tests/test_training_eval.py checks a run's).
refreshed = []
plots.refresh = refreshed.append


def run_case(spec):
  config = load_config(spec["config"], spec["variant"], check=False)
  for key, value in spec["overrides"].items():
    node = config
    *parents, last = key.split(".")
    for p in parents:
      node = node[p]
    node[last] = tuple(value) if isinstance(value, list) else value
  validate(config)
  out, states = {"seconds": {}, "plots": {}}, {}
  with tfds.testing.mock_data(num_examples=spec["num_examples"]):
    for run, workdir, iterations in (("first", "resumed", 2), ("resume", "resumed", 4),
                                     ("straight", "straight", 4)):
      config.num_iterations = iterations
      t = time.perf_counter()
      del refreshed[:]
      states[run] = train.train_and_evaluate(config, os.path.join(spec["tmp"], workdir))
      out["seconds"][run] = round(time.perf_counter() - t, 1)
      out["plots"][run] = len(refreshed)
  a, b = states["resume"], states["straight"]
  pairs = zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b))
  out["differ"] = [jax.tree_util.keystr(p) for (p, x), y in pairs
                   if not np.array_equal(np.asarray(x), np.asarray(y))][:10]
  out["step"] = int(a.step)
  z = jax.random.normal(jax.random.PRNGKey(0), (2, config.model.z_dim))
  out["generated"] = list(train.generate(a, z).shape)
  n = models.num_classes(config.model)
  if n > 1:  # the class-stacked models: one image per class, or the asked class's
    out["generated_last_class"] = list(train.generate(a, z, label=n - 1).shape)
  return out


for spec in json.loads(sys.argv[1]):
  printed = io.StringIO()
  try:
    with contextlib.redirect_stdout(printed):
      out = run_case(spec)
  except BaseException:
    out = {"error": traceback.format_exc()[-4000:]}
  out["stdout"] = printed.getvalue()[-4000:]
  print("RESULT " + json.dumps({"id": spec["id"], **out}), flush=True)
"""

TINY = {"batch_size": 4, "model.channels": 8, "model.d_widths": [8], "num_samples": 4,
        "log_every": 2, "sample_every": 2, "checkpoint_every": 2,
        # One critic update per iteration: the D update is unrolled n_critic times in the
        # compiled step, so this divides its compile time; n_critic > 1 is trained in
        # test_train.py (wgan_gp's 5 included).
        "n_critic": 1}

# (experiment, variant, extra overrides): every experiment file × every variant it offers. igan
# on experiments/fashion_mnist.py is trained, checkpointed and resumed bit-exactly through the CLI
# by test_main.py (test_cli_resume_is_bit_exact): not repeated here. Cases whose programs have
# the same shapes (MNIST / Fashion-MNIST, CelebA / LSUN) run one after the other in one process
# and share its traced and compiled programs (state.create_train_state keys its models on the
# image shape, not the dataset), so the whole table costs little more than its distinct models.
TRAIN_CASES = [
    # Fashion-MNIST labels 0 and 7 as classes 0, 1: a mapping that is not the identity.
    ("fashion_mnist", "igan_v2", {}),
    # igan_vn's code for any N; N = 3 keeps the unrolled stack small on CPU; labels 9, 4, 1 (in
    # that order) as classes 0, 1, 2: again not the identity.
    ("fashion_mnist", "igan_vn", {"model.num_classes": 3, "data.classes": [9, 4, 1]}),
    ("fashion_mnist", "dcgan", {}),
    ("fashion_mnist", "wgan_gp", {}),
    ("mnist", "igan", {}),
    ("mnist", "igan_v2", {}),
    ("mnist", "igan_vn", {"model.num_classes": 3, "data.classes": [3, 1, 4]}),
    ("mnist", "dcgan", {}),
    ("mnist", "wgan_gp", {}),
    # 96×96: mock celeb_a (218×178 faces, cropped and resized as the real ones; igan_v2's two
    # classes the attribute Male) and mock LSUN (igan_v2: bedroom and church_outdoor).
    ("celeba", "igan", {}),
    ("celeba", "igan_v2", {}),
    ("celeba", "dcgan", {}),
    ("celeba", "wgan_gp", {}),
    ("lsun_bedroom", "igan", {}),
    ("lsun_bedroom", "igan_v2", {}),
    ("lsun_bedroom", "dcgan", {}),
    ("lsun_bedroom", "wgan_gp", {}),
    # igan_paper: igan's model with base_config()'s recipe (the same shapes as igan: its pairs
    # of files share their compilations).
    ("fashion_mnist", "igan_paper", {}),
    ("mnist", "igan_paper", {}),
    ("celeba", "igan_paper", {}),
    ("lsun_bedroom", "igan_paper", {}),
]
TRAIN_IDS = [f"{n}:{v}" for n, v, _ in TRAIN_CASES]


def test_every_experiment_and_variant_is_trained():
  # fashion_mnist:igan is test_main.py's CLI run; a new file or variant must be added above.
  trained = {(n, v) for n, v, _ in TRAIN_CASES} | {("fashion_mnist", "igan")}
  assert trained == set(cases())
TRAIN_TEST = "test_trains_checkpoints_and_resumes_on_mock_data"


# Relative cost of a case's first run (compiling its programs), measured on 2 CPU cores: by
# resolution and by variant. A case whose programs another case compiled costs ~0.1 of that (the
# class-stacked models' class index is shaped by the dataset's size, not by its class counts, so
# MNIST's and Fashion-MNIST's mock data share their programs too).
RESOLUTION_COST = {28: 1.0, 96: 1.6}
VARIANT_COST = {"dcgan": 1.0, "wgan_gp": 1.0, "igan": 1.6, "igan_paper": 1.8, "igan_v2": 2.5,
                "igan_vn": 2.0}


def split_by_program(specs, n):
  """The cases in n lists of about equal cost (RESOLUTION_COST, VARIANT_COST). Cases of one
  variant at one resolution (MNIST and Fashion-MNIST, CelebA and LSUN) compile the same models:
  they go into one list, one after the other, so that the second reuses the first's traced and
  compiled programs instead of compiling them at the same time in another process."""
  groups = {}
  for spec in specs:
    groups.setdefault((spec["variant"], EXPERIMENTS[spec["name"]][2]), []).append(spec)

  def cost(key, group):
    variant, resolution = key
    return RESOLUTION_COST[resolution] * VARIANT_COST[variant] * (1 + 0.1 * (len(group) - 1))

  lists, costs = [[] for _ in range(n)], [0.0] * n
  for key, group in sorted(groups.items(), key=lambda kv: -cost(*kv)):
    i = costs.index(min(costs))
    lists[i] += group
    costs[i] += cost(key, group)
  return [chunk for chunk in lists if chunk]


@pytest.fixture(scope="module")
def training_results(request, tmp_path_factory):
  """{case id: result} for the cases of TRAIN_TEST this session runs, in two subprocesses."""
  selected = {item.callspec.id for item in request.session.items
              if getattr(item, "originalname", None) == TRAIN_TEST}
  specs = []
  for (name, variant, overrides), case_id in zip(TRAIN_CASES, TRAIN_IDS):
    if case_id in selected:
      specs.append({"id": case_id, "name": name, "config": path_of(name), "variant": variant,
                    "tmp": str(tmp_path_factory.mktemp(case_id.replace(":", "_"))),
                    "overrides": dict(TINY, **overrides), "num_examples": 64})
  tfds_dir = tmp_path_factory.mktemp("tfds")
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", TFDS_DATA_DIR=str(tfds_dir))
  env["PYTHONPATH"] = os.pathsep.join(filter(None, (ROOT, env.get("PYTHONPATH"))))
  # Two processes, one per core: compiling is most of each case and XLA compiles on one thread.
  # Each has its own TFDS data dir (the mock data is prepared per dir) and both share the
  # session's persistent compilation cache.
  chunks = split_by_program(specs, 2)
  procs = [subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(chunk)], cwd=ROOT,
                            env=dict(env, TFDS_DATA_DIR=str(tfds_dir / str(i))),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i, chunk in enumerate(chunks)]
  results = {}
  try:
    outputs = [proc.communicate(timeout=1800) for proc in procs]
  finally:  # a timeout in one leaves no process behind
    for proc in procs:
      proc.kill()
  for chunk, proc, (stdout, stderr) in zip(chunks, procs, outputs):
    for line in stdout.splitlines():
      if line.startswith("RESULT "):
        out = json.loads(line[len("RESULT "):])
        results[out.pop("id")] = out
    for spec in chunk:  # a crash of a whole process fails its cases with its stderr
      results.setdefault(spec["id"], {"error": f"exit {proc.returncode}: {stderr[-4000:]}"})
  for spec in specs:
    results[spec["id"]]["tmp"] = spec["tmp"]
  return results


@pytest.mark.slow
@pytest.mark.parametrize("name,variant,overrides", TRAIN_CASES, ids=TRAIN_IDS)
def test_trains_checkpoints_and_resumes_on_mock_data(name, variant, overrides, training_results):
  out = training_results[f"{name}:{variant}"]
  assert "error" not in out, out["error"]
  assert "resumed" in out["stdout"] and "from step 2" in out["stdout"], out["stdout"]
  # The plots refreshed at each checkpoint: 2 and 4, 4 on resume, 2 and 4 straight.
  assert out["plots"] == {"first": 1, "resume": 1, "straight": 2}, out["plots"]
  assert out["step"] == 4
  assert out["differ"] == [], out  # resumed at 2 == straight to 4, every array of the state
  workdir = os.path.join(out["tmp"], "resumed")
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  assert steps == [2, 4]
  assert sorted(os.listdir(os.path.join(workdir, "samples"))) == [
      "step_000002.png", "step_000004.png"]
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  logged = [r for r in rows if "d_loss" in r]
  assert [r["step"] for r in logged] == [2, 4]
  for r in logged:
    for key in ("d_loss", "g_loss", "lr_d", "lr_g"):
      assert math.isfinite(r[key]), (key, r)
  saved = json.load(open(os.path.join(workdir, "config.json")))
  assert saved["model"]["name"] == {"igan_paper": "igan"}.get(variant, variant)
  res = EXPERIMENTS[name][2]
  ch = 1 if res == 28 else 3
  n = overrides.get("model.num_classes") or {"igan_v2": 2, "igan_vn": 10}.get(variant)
  assert out["generated"] == ([n] if n else []) + [2, res, res, ch]
  if n:
    assert out["generated_last_class"] == [2, res, res, ch]


if __name__ == "__main__":
  print("experiment     variant  res  generator  discriminator")
  for (f, v, res), (gp, dp) in sorted(param_table().items(), key=lambda kv: (kv[0][2], kv[0])):
    print(f"{f:14s} {v:8s} {res:3d} {gp:10,d} {dp:14,d}")
