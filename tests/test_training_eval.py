"""FID during training (evaluate.TrainingEvaluator) and evaluating the best checkpoint.

Untrained tiny generators under TFDS's mock data: the numbers mean nothing, what is tested is
the protocol (fixed latents, cached references, the keys, class-stacked output, the same value
as the evaluate mode) — no training step is compiled. Each state costs ~1 min of CPU to build
(the inits compile), so the states are module fixtures.
"""
import math
import os

import numpy as np
import pytest

from conftest import tiny_config
from igan_jax import evaluate

N, MOCK_EXAMPLES = 60, 400


def mock_data(n=MOCK_EXAMPLES):
  import tensorflow_datasets as tfds
  return tfds.testing.mock_data(num_examples=n)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("eval_cache"))


@pytest.fixture(scope="module")
def plain():
  from igan_jax import train
  config = tiny_config(**{"ema_decay": 0.9, "eval.train_num_samples": N})
  return config, train.create_train_state(config)


def test_backbone_choice():
  from igan_jax.config import ConfigError
  assert evaluate.train_backbone(tiny_config()) == "classifier"
  assert evaluate.train_backbone(tiny_config(resolution=96)) == "inception"
  assert evaluate.train_backbone(tiny_config("celeb_a", 96)) == "inception"
  assert evaluate.train_backbone(tiny_config("mnist")) == "inception"  # no mnist weights shipped
  assert evaluate.train_backbone(tiny_config(**{"eval.train_backbone": "inception"})) == \
      "inception"
  with pytest.raises(ConfigError, match="train_backbone"):
    evaluate.train_backbone(tiny_config("celeb_a", 96, **{"eval.train_backbone": "classifier"}))
  ev = evaluate.TrainingEvaluator(tiny_config(**{"eval.train_num_samples": 123}))
  assert ev.key == "fid_classifier" and ev.num_samples == 123 and ev.protocol["n"] == 123


def test_select_real_is_class_balanced_and_flatten_is_latent_major():
  labels = np.repeat(np.arange(10), 40)
  idx, how = evaluate.select_real(labels, 61, classes=(3, 7))
  assert np.all(np.diff(idx) > 0) and "class-balanced" in how
  assert np.bincount(labels[idx], minlength=10)[[3, 7]].tolist() == [31, 30]
  assert np.array_equal(evaluate.select_real(labels, 61, (3, 7))[0], idx)  # seeded
  with pytest.raises(evaluate.EvaluationError, match="class 3"):
    evaluate.select_real(labels, 100, classes=(3, 7))
  assert np.array_equal(evaluate.select_real(labels, 400)[0], np.arange(400))
  x = np.arange(2 * 3).reshape(2, 3, 1, 1, 1)  # (K=2 classes, B=3 latents)
  assert evaluate.flatten_classes(x)[:, 0, 0, 0].tolist() == [0, 3, 1, 4, 2, 5]
  assert evaluate.flatten_classes(x[0]).shape == (3, 1, 1, 1)
  assert evaluate.latent_batches(61, 2, 500) == (31, 31)
  assert evaluate.latent_batches(2000, 10, 50) == (200, 5)


def test_values_are_fixed_and_ema_is_evaluated(plain, cache):
  import jax
  config, state = plain
  with mock_data():
    ev = evaluate.TrainingEvaluator(config, cache_dir=cache)
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
    evaluate.TrainingEvaluator(config, cache_dir=cache)(state)  # computes or reuses
    capsys.readouterr()
    evaluate.TrainingEvaluator(config, cache_dir=cache).build(state)  # a resumed run
  out = capsys.readouterr().out
  assert "features of" not in out and "FID during training: classifier, N=60" in out


def test_same_value_as_the_evaluate_mode_and_best_checkpoint(plain, cache, tmp_path):
  """The logged FID is reproduced by `evaluate_workdir(..., num_samples=N, seeds=[0])`, also
  through --checkpoint=best."""
  from igan_jax import checkpoint
  config, state = plain
  workdir = str(tmp_path / "wd")
  ck = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  ck.save(state)
  ck.wait()
  ck.close()
  checkpoint.save_config(workdir, config.to_dict())
  with mock_data():
    ev = evaluate.TrainingEvaluator(config, cache_dir=cache, verbose=False)
    logged = ev(state)
    best = checkpoint.BestCheckpointer(checkpoint.best_directory(workdir), ev.key, ev.protocol)
    assert best.save(state, 0, logged[ev.key])
    best.close()
    kw = dict(num_samples=N, seeds=[0], backbones=("classifier",), cache_dir=cache,
              verbose=False)
    rec = evaluate.evaluate_workdir(config, workdir, **kw)
    rec_best = evaluate.evaluate_workdir(config, workdir, step="best", **kw)
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
  assert evaluate.parse_checkpoint(None) is None
  assert evaluate.parse_checkpoint(7) == 7 and evaluate.parse_checkpoint("12") == 12
  assert evaluate.parse_checkpoint(" best") == "best"
  with pytest.raises(CheckpointError, match="step number or 'best'"):
    evaluate.parse_checkpoint("latest")


def test_best_missing_is_one_clear_error(plain, tmp_path):
  from igan_jax.checkpoint import CheckpointError
  config, _ = plain
  os.makedirs(tmp_path / "checkpoints")
  with pytest.raises(CheckpointError, match="no best checkpoint.*eval_every"):
    evaluate.evaluate_workdir(config, str(tmp_path), step="best", verbose=False)
  assert os.listdir(tmp_path / "checkpoints") == []  # nothing created


def test_class_stacked_generator(cache):
  """igan_v2 makes (2, B, H, W, C): the class axis goes into the sample axis, the reference is
  balanced over the model's classes, and class_match says whether head k draws class k."""
  from igan_jax import train
  config = tiny_config(**{"model.name": "igan_v2", "data.classes": (3, 7),
                          "eval.train_num_samples": 61})
  state = train.create_train_state(config)
  assert evaluate.images_per_latent(state) == 2
  with mock_data():
    ev = evaluate.TrainingEvaluator(config, cache_dir=cache)
    out = ev(state)
    feats, logits = ev.features(state, state.g.params)
  assert set(out) == {"fid_classifier", "fid_classifier_floor", "class_entropy",
                      "classes_ge_1pct", "class_match", "eval_seconds"}
  assert feats.shape == (61, 128) and logits.shape == (61, 10)
  assert math.isfinite(out["fid_classifier"]) and 0 <= out["class_match"] <= 1
  assert np.bincount(ev._labels, minlength=10)[[3, 7]].tolist() == [31, 30]
  assert ev.protocol["classes"] == [3, 7]
  # The evaluate mode's generation gives the same images, in the same (latent-major) order.
  images = evaluate.generate_images(state, evaluate.TRAIN_SEED, 61, 500)
  from igan_jax.evaluation import classifier as clf
  ref_feats = clf.classifier_features(images, "fashion_mnist")
  np.testing.assert_allclose(feats, ref_feats, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # the FID Inception network at 299×299 on CPU: ~3-5 min on 2 shared cores
def test_inception_on_96x96_rgb(cache, monkeypatch):
  """celeb_a at 96×96×3: auto picks Inception (random weights here: nothing is fetched)."""
  from igan_jax import train
  from igan_jax.evaluation import inception
  monkeypatch.setattr(inception, "load_params", lambda path=None: inception.init_random_params(0))
  config = tiny_config("celeb_a", 96, **{"eval.train_num_samples": 10,
                                         "eval.inception_batch_size": 5})
  state = train.create_train_state(config)
  with mock_data(16):
    ev = evaluate.TrainingEvaluator(config, cache_dir=cache)
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
    train.train_and_evaluate(config, workdir)
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
