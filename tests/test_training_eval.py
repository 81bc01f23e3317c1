"""FID during training (evaluation.during_training) and evaluating the best checkpoint.

Untrained tiny generators under TFDS's mock data: the numbers mean nothing, what is tested is
the protocol (fixed latents, cached references, the keys, class-stacked output, the same value
as the evaluate mode) — no training step is compiled. Each state costs ~1 min of CPU to build
(the inits compile), so the states are module fixtures.
"""
import math
import os

import numpy as np
import pytest

from helpers import tiny_config, write_workdir
from igan_jax.checkpoint import parse_checkpoint
from igan_jax.evaluation import during_training, reference, sampling
from igan_jax.evaluation import workdir as evaluation
from igan_jax.evaluation.during_training import TrainingEvaluator, train_backbone
from igan_jax.evaluation.settings import EvaluationError, SettingsError
from igan_jax.state import create_train_state

N, MOCK_EXAMPLES = 60, 400


def mock_data(n=MOCK_EXAMPLES):
  import tensorflow_datasets as tfds
  return tfds.testing.mock_data(num_examples=n)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("eval_cache"))


@pytest.fixture(scope="module")
def plain():
  config = tiny_config(**{"ema_decay": 0.9, "eval.train_num_samples": N})
  return config, create_train_state(config)


def imports_of(module: str) -> set[str]:
  """The igan_jax modules `module` imports (anywhere in its source), by name."""
  import ast
  import importlib.util
  tree = ast.parse(open(importlib.util.find_spec(module).origin).read())
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
      out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
  return {m for m in out if m.startswith("igan_jax")}


def test_evaluation_never_imports_training():
  """Evaluation reaches no training code, not even indirectly (docs/design.md §2): it takes a
  generate function, and training takes its evaluator as an argument."""
  import importlib.util
  seen, todo = set(), ["igan_jax.evaluation.workdir", "igan_jax.evaluation.during_training"]
  while todo:
    module = todo.pop()
    try:
      is_module = module not in seen and importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # `from module import name` of a function or class
      is_module = False
    if is_module:
      seen.add(module)
      todo += sorted(imports_of(module))
  assert "igan_jax.evaluation.reference" in seen and "igan_jax.checkpoint" in seen
  assert not {"igan_jax.train", "igan_jax.losses"} & seen  # the step and the loop
  assert not any(m.startswith("igan_jax.evaluation") for m in imports_of("igan_jax.train"))


def test_backbone_choice():
  assert train_backbone(tiny_config()) == "classifier"
  assert train_backbone(tiny_config(resolution=96)) == "inception"
  assert train_backbone(tiny_config("celeb_a", 96)) == "inception"
  assert train_backbone(tiny_config("mnist")) == "inception"  # no mnist weights shipped
  assert train_backbone(tiny_config(**{"eval.train_backbone": "inception"})) == "inception"
  with pytest.raises(SettingsError, match="train_backbone"):
    train_backbone(tiny_config("celeb_a", 96, **{"eval.train_backbone": "classifier"}))
  ev = TrainingEvaluator(tiny_config(**{"eval.train_num_samples": 123}))
  assert ev.key == "fid_classifier" and ev.num_samples == 123 and ev.protocol["n"] == 123
  # The builder main.py hands to training: None when FID during training is off.
  assert during_training.for_config(tiny_config()) is None
  assert isinstance(during_training.for_config(tiny_config(eval_every=5)), TrainingEvaluator)


def test_select_real_is_class_balanced_and_flatten_is_latent_major():
  labels = np.repeat(np.arange(10), 40)
  idx, how = reference.select_real(labels, 61, classes=(3, 7))
  assert np.all(np.diff(idx) > 0) and "class-balanced" in how
  assert np.bincount(labels[idx], minlength=10)[[3, 7]].tolist() == [31, 30]
  assert np.array_equal(reference.select_real(labels, 61, (3, 7))[0], idx)  # seeded
  with pytest.raises(EvaluationError, match="class 3"):
    reference.select_real(labels, 100, classes=(3, 7))
  assert np.array_equal(reference.select_real(labels, 400)[0], np.arange(400))
  # The same choice as before the selector was one module: a seeded subset, sorted.
  want = np.sort(np.random.default_rng(0).choice(400, 61, replace=False))
  assert np.array_equal(reference.select_real(labels, 61)[0], want)
  # Two disjoint sets of one split (the floor of LSUN and folders), class-balanced too.
  for classes in (None, (3, 7)):
    first, _ = reference.select_real(labels, 40, classes, part=0)
    second, how = reference.select_real(labels, 40, classes, part=1)
    assert len(first) == len(second) == 40 and not set(first) & set(second)
    assert "permutation" in how
  with pytest.raises(EvaluationError, match="100 real images of class 3"):
    reference.select_real(labels, 100, (3, 7), part=1)
  x = np.arange(2 * 3).reshape(2, 3, 1, 1, 1)  # (K=2 classes, B=3 latents)
  assert sampling.flatten_classes(x)[:, 0, 0, 0].tolist() == [0, 3, 1, 4, 2, 5]
  assert sampling.flatten_classes(x[0]).shape == (3, 1, 1, 1)
  assert sampling.latent_batches(61, 2, 500) == (31, 31)
  assert sampling.latent_batches(2000, 10, 50) == (200, 5)


def test_values_are_fixed_and_ema_is_evaluated(plain, cache):
  import jax
  config, state = plain
  with mock_data():
    ev = TrainingEvaluator(config, cache_dir=cache)
    first = ev(state)
    assert ev.split == "test" and ev.protocol_detail["split"] == "test"
    # Another training rng (the run's key moves on): the same latents, the same value.
    again = ev(state.replace(rng=jax.random.PRNGKey(123)))
  keys = {"fid_classifier", "fid_classifier_ema", "fid_classifier_floor", "class_entropy",
          "classes_ge_1pct", "class_entropy_ema", "classes_ge_1pct_ema", "eval_seconds"}
  assert set(first) == keys
  for k in keys - {"eval_seconds"}:
    assert isinstance(first[k], float) and math.isfinite(first[k]) and again[k] == first[k], k
  assert first["fid_classifier"] > 0 and 0 <= first["class_entropy"] <= math.log(10) + 1e-12
  assert 1 <= first["classes_ge_1pct"] <= 10
  # At initialisation g_ema equals g; a different g_ema gives its own number.
  assert first["fid_classifier_ema"] == first["fid_classifier"]
  shifted = state.replace(g_ema=jax.tree_util.tree_map(lambda p: p * 0.5, state.g_ema))
  with mock_data():
    other = ev(shifted)
  assert other["fid_classifier"] == first["fid_classifier"]
  assert other["fid_classifier_ema"] != first["fid_classifier_ema"]
  # Without EMA: no _ema keys.
  with mock_data():
    no_ema = ev(state.replace(g_ema=None))
  assert not any(k.endswith("_ema") for k in no_ema)


def test_reference_is_cached_for_a_resume(plain, cache, capsys):
  config, state = plain
  with mock_data():
    TrainingEvaluator(config, cache_dir=cache)(state)  # computes or reuses
    capsys.readouterr()
    TrainingEvaluator(config, cache_dir=cache).build(state)  # a resumed run
  out = capsys.readouterr().out
  assert "features of" not in out and "FID during training: classifier, N=60" in out


def test_same_value_as_the_evaluate_mode_and_best_checkpoint(plain, cache, tmp_path):
  """The logged FID is reproduced by `evaluate_workdir(..., num_samples=N, seeds=[0])`, also
  through --checkpoint=best."""
  from igan_jax import checkpoint
  config, state = plain
  workdir = write_workdir(str(tmp_path / "wd"), config, state)
  with mock_data():
    ev = TrainingEvaluator(config, cache_dir=cache, verbose=False)
    logged = ev(state)
    best = checkpoint.BestCheckpointer(checkpoint.best_directory(workdir), ev.key, ev.protocol)
    assert best.save(state, 0, logged[ev.key])
    best.close()
    kw = dict(num_samples=N, seeds=[0], backbones=("classifier",), cache_dir=cache,
              verbose=False)
    rec = evaluation.evaluate_workdir(config, workdir, **kw)
    rec_best = evaluation.evaluate_workdir(config, workdir, step="best", **kw)
  b = rec["backbones"]["classifier"]
  assert b["reference"]["real"]["cache"] == "hit"  # the same cached real set
  assert b["mean"]["fid"] == pytest.approx(logged["fid_classifier"], rel=1e-4)
  assert b["floor"]["fid"] == pytest.approx(logged["fid_classifier_floor"], abs=1e-6)
  assert rec["class_metrics"]["mean"]["entropy"] == pytest.approx(logged["class_entropy"],
                                                                 abs=1e-6)
  assert rec_best["backbones"]["classifier"]["mean"]["fid"] == b["mean"]["fid"]
  stored = rec_best["protocol"]["best_checkpoint"]
  assert stored["step"] == 0 and stored["metric"] == "fid_classifier"
  assert stored["value"] == logged["fid_classifier"]


def test_checkpoint_argument():
  from igan_jax.checkpoint import CheckpointError
  assert parse_checkpoint(None) is None
  assert parse_checkpoint(7) == 7 and parse_checkpoint("12") == 12
  assert parse_checkpoint(np.int64(3)) == 3 and type(parse_checkpoint(np.int64(3))) is int
  assert parse_checkpoint(" best") == "best"
  for bad in ("latest", True, 1.5):
    with pytest.raises(CheckpointError, match="step number or 'best'"):
      parse_checkpoint(bad)


def test_best_missing_is_one_clear_error(plain, tmp_path):
  from igan_jax.checkpoint import CheckpointError
  config, _ = plain
  os.makedirs(tmp_path / "checkpoints")
  with pytest.raises(CheckpointError, match="no best checkpoint.*eval_every"):
    evaluation.evaluate_workdir(config, str(tmp_path), step="best", verbose=False)
  assert os.listdir(tmp_path / "checkpoints") == []  # nothing created


def test_class_stacked_generator(cache):
  """igan_v2 makes (2, B, H, W, C): the class axis goes into the sample axis, the reference is
  balanced over the model's classes, and class_match says whether head k draws class k."""
  from igan_jax.inference import generate
  config = tiny_config(**{"model.name": "igan_v2", "data.classes": (3, 7),
                          "eval.train_num_samples": 61})
  state = create_train_state(config)
  assert sampling.images_per_latent(lambda z: generate(state, z), state.hp.z_dim) == 2
  with mock_data():
    ev = TrainingEvaluator(config, cache_dir=cache)
    out = ev(state)
    feats, logits = ev.features(state, state.g.params)
  assert set(out) == {"fid_classifier", "fid_classifier_floor", "class_entropy",
                      "classes_ge_1pct", "class_match", "eval_seconds"}
  assert feats.shape == (61, 128) and logits.shape == (61, 10)
  assert math.isfinite(out["fid_classifier"]) and 0 <= out["class_match"] <= 1
  assert np.bincount(ev._labels, minlength=10)[[3, 7]].tolist() == [31, 30]
  assert ev.protocol["classes"] == [3, 7]
  # The evaluate mode's generation gives the same images, in the same (latent-major) order.
  images = evaluation.state_images(state, during_training.TRAIN_SEED, 61, 500)
  from igan_jax.evaluation import classifier as clf
  ref_feats = clf.classifier_features(images, "fashion_mnist")
  np.testing.assert_allclose(feats, ref_feats, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # the FID Inception network at 299×299 on CPU: ~3-5 min on 2 shared cores
def test_inception_on_96x96_rgb(cache, monkeypatch):
  """celeb_a at 96×96×3: auto picks Inception (random weights here: nothing is fetched)."""
  from igan_jax.evaluation import inception
  monkeypatch.setattr(inception, "load_params", lambda path=None: inception.init_random_params(0))
  config = tiny_config("celeb_a", 96, **{"eval.train_num_samples": 10,
                                         "eval.inception_batch_size": 5})
  state = create_train_state(config)
  with mock_data(16):
    ev = TrainingEvaluator(config, cache_dir=cache)
    out = ev(state)
  assert ev.key == "fid_inception"
  assert set(out) == {"fid_inception", "fid_inception_floor", "eval_seconds"}
  assert all(math.isfinite(v) for v in out.values()) and out["fid_inception"] > 0


@pytest.mark.slow  # a tiny run: two training compilations and the classifier evaluation
def test_training_loop_logs_fid_keeps_best_and_plots(tmp_path, monkeypatch):
  """config.eval_every: FID rows in metrics.jsonl, the lowest one's state in checkpoints/best/,
  plots/losses.png and plots/fid.png refreshed."""
  import json
  from igan_jax import checkpoint, train
  monkeypatch.setenv("IGAN_JAX_CACHE", str(tmp_path / "cache"))
  config = tiny_config(**{"num_iterations": 4, "eval_every": 2, "log_every": 2,
                          "sample_every": 2, "checkpoint_every": 2, "ema_decay": 0.9,
                          "eval.train_num_samples": N})
  workdir = str(tmp_path / "run")
  with mock_data():
    with pytest.raises(ValueError, match="needs an evaluator"):  # training builds none itself
      train.train_and_evaluate(config, workdir)
    train.train_and_evaluate(config, workdir, evaluator=during_training.for_config(config))
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  fid = {r["step"]: r["fid_classifier"] for r in rows if "fid_classifier" in r}
  assert sorted(fid) == [2, 4] and all(math.isfinite(v) for v in fid.values())
  assert all("fid_classifier_ema" in r for r in rows if "fid_classifier" in r)
  best = checkpoint.BestCheckpointer(checkpoint.best_directory(workdir), "fid_classifier",
                                     None)
  step, value = best.best()
  best.close()
  assert value == min(fid.values()) and fid[step] == value
  for name in ("losses.png", "fid.png"):
    assert os.path.getsize(os.path.join(workdir, "plots", name)) > 1000
