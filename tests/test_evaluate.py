"""evaluate_workdir end to end on a tiny trained workdir (TFDS mock data), the reference cache,
class metrics, visible skipping of a backbone, and `python -m igan_jax.main --mode=evaluate`."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import tiny_config
from igan_jax import evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
N, SEEDS, MOCK_EXAMPLES = 120, 2, 160
# The tests' tiny config with one critic update and no gradient penalty: the same generator
# code, and about half the compile time of the training step this file has to build.
TINY = {"n_critic": 1, "loss.gp_weight": 0.0}

# A config file for the CLI: the tests' tiny config with its eval section set for a small run
# (updated, not replaced: config.validate checks every eval key).
CONFIG_FILE = f"""
import sys
sys.path.insert(0, {TESTS!r})
from conftest import tiny_config

def get_config():
  c = tiny_config(**{TINY!r})
  c.eval.update(dict(num_samples={N}, seeds={SEEDS}, backbones="classifier", inception_samples=0))
  return c
"""

MOCK_MAIN = f"""
import sys
import tensorflow_datasets as tfds
from igan_jax import main
with tfds.testing.mock_data(num_examples={MOCK_EXAMPLES}):
  sys.argv = ["igan_jax.main"] + sys.argv[1:]
  main.run()
"""


def mock_data():
  import tensorflow_datasets as tfds
  return tfds.testing.mock_data(num_examples=MOCK_EXAMPLES)


def make_workdir(path, config, steps=2):
  """A workdir as training leaves it: checkpoints/<step> and config.json."""
  import jax
  from igan_jax import checkpoint, train
  state = train.create_train_state(config)
  images = np.random.default_rng(0).integers(0, 256, (32, 28, 28, 1), dtype=np.uint8)
  state, _ = train.train_steps(state, jax.device_put(images), steps)
  ckpt = checkpoint.Checkpointer(os.path.join(path, "checkpoints"))
  ckpt.save(state)
  ckpt.wait()
  ckpt.close()
  checkpoint.save_config(path, config.to_dict())
  return path


# Tests that use `run` are marked slow: its training step takes ~1 min of CPU to compile (4 min
# of wall time on the shared 2-core machine); the evaluation itself takes ~15 s.
@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """One evaluation of a tiny 2-step run: classifier backbone, Inception made unavailable."""
  from igan_jax.evaluation import inception
  from igan_jax.evaluation.inception_weights import WeightsError

  root = tmp_path_factory.mktemp("eval")
  workdir = make_workdir(str(root / "wd"), tiny_config(**TINY))
  cache = str(root / "cache")

  def no_weights(*a, **k):
    raise WeightsError("test: offline, no FID Inception weights")

  mp = pytest.MonkeyPatch()
  mp.setattr(inception, "load_params", no_weights)
  try:
    with mock_data():
      record = evaluate.evaluate_workdir(tiny_config(**TINY), workdir, num_samples=N, seeds=SEEDS,
                                         backbones=("classifier", "inception"), cache_dir=cache)
  finally:
    mp.undo()
  return dict(workdir=workdir, cache=cache, record=record)


@pytest.mark.slow  # the `run` fixture compiles a training step (~1-4 min)
def test_record_written_with_protocol(run):
  path = os.path.join(run["workdir"], "eval", "2.json")
  assert run["record"]["path"] == path
  rec = json.load(open(path))
  p = rec["protocol"]
  assert rec["step"] == 2 and p["dataset"] == "fashion_mnist" and p["resolution"] == 28
  assert p["real_split"] == "test" and p["floor_split"] == "train" and p["seeds"] == [0, 1]
  b = rec["backbones"]["classifier"]
  bp = b["protocol"]
  assert bp["n"] == N and bp["backbone"] == "classifier" and bp["resize"].startswith("none")
  from igan_jax.evaluation import classifier as clf
  assert bp["weights_sha256"] == clf.load_info("fashion_mnist")["sha256"]
  assert "default_rng" in bp["real_subset"]  # N < the mock split's size: a seeded subset
  # FID finite and >= 0 for every seed, mean ± sd over the seeds, and the floor beside it.
  assert len(b["per_seed"]) == SEEDS
  for row in b["per_seed"]:
    assert math.isfinite(row["fid"]) and row["fid"] >= 0
    for k in ("precision", "recall", "coverage"):
      assert 0 <= row[k] <= 1
  assert b["mean"]["fid"] == pytest.approx(np.mean([r["fid"] for r in b["per_seed"]]))
  assert b["sd"]["fid"] is not None and b["sd"]["fid"] >= 0
  assert math.isfinite(b["floor"]["fid"]) and b["floor"]["fid"] >= -1e-6
  # Different seeds give different samples.
  assert b["per_seed"][0]["fid"] != b["per_seed"][1]["fid"]


@pytest.mark.slow  # the `run` fixture compiles a training step (~1-4 min)
def test_unavailable_backbone_is_skipped_visibly(run):
  rec = run["record"]
  assert "inception" not in rec["backbones"]
  assert "offline" in rec["skipped"]["inception"]
  assert "SKIPPED" in evaluate.format_table(rec)


@pytest.mark.slow  # the `run` fixture compiles a training step (~1-4 min)
def test_class_metrics(run):
  c = run["record"]["class_metrics"]
  assert c["n"] == N and len(c["class_names"]) == 10
  for row in c["per_seed"]:
    assert sum(row["histogram"]) == N
    assert sum(row["share"]) == pytest.approx(1.0)
    assert 0 <= row["entropy"] <= math.log(10) + 1e-12
    assert row["kl_to_real"] >= 0 and 1 <= row["classes_ge_1pct"] <= 10
  assert "accuracy" in c["real_predicted"]


def test_record_path_never_overwrites(tmp_path):
  workdir = str(tmp_path)
  first = evaluate.record_path(workdir, 600)
  assert first == os.path.join(workdir, "eval", "600.json")
  assert evaluate.record_path(workdir, 600) == first  # nothing written yet
  open(first, "w").write("{}")
  second = evaluate.record_path(workdir, 600)
  assert second == os.path.join(workdir, "eval", "600.1.json")
  open(second, "w").write("{}")
  assert evaluate.record_path(workdir, 600).endswith("600.2.json")
  assert evaluate.record_path(workdir, 700).endswith("700.json")
  assert evaluate.record_path(workdir, "best").endswith("best.json")


def test_class_metrics_by_hand():
  labels = np.repeat(np.arange(4), 25)  # uniform over 4 classes
  collapsed = np.zeros((100, 4))
  collapsed[:, 2] = 5.0  # every sample predicted as class 2
  m = evaluate.class_metrics(collapsed, labels, 4)
  assert m["histogram"] == [0, 0, 100, 0] and m["entropy"] == 0.0
  assert m["kl_to_real"] == pytest.approx(math.log(4)) and m["classes_ge_1pct"] == 1
  m = evaluate.class_metrics(np.eye(4)[labels] * 9, labels, 4)
  assert m["entropy"] == pytest.approx(math.log(4)) and m["kl_to_real"] == pytest.approx(0)
  assert m["classes_ge_1pct"] == 4


class CountingBackbone(evaluate._Backbone):
  def __init__(self, protocol):
    self.calls = 0

    def extract(images):
      self.calls += 1
      return images.reshape(len(images), -1)[:, :8].astype(np.float32), None
    super().__init__("toy", extract, protocol)


def test_reference_cache_reuse_and_mismatch(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (50, 28, 28, 1), dtype=np.uint8)
  b = CountingBackbone(dict(backbone="toy", weights_sha256="aaa"))
  args = ("fashion_mnist", "test", 28)
  f1, _, s1, info = evaluate.reference_features(b, *args, images, str(tmp_path))
  assert info["cache"] == "miss" and b.calls == 1 and os.path.exists(info["path"])
  f2, _, s2, info = evaluate.reference_features(b, *args, images, str(tmp_path))
  assert info["cache"] == "hit" and b.calls == 1
  np.testing.assert_array_equal(f1, f2)
  np.testing.assert_array_equal(s1.cov(), s2.cov())
  # Other weights (same file name): recomputed and overwritten.
  b.protocol["weights_sha256"] = "bbb"
  _, _, _, info = evaluate.reference_features(b, *args, images, str(tmp_path))
  assert info["cache"] == "recomputed" and b.calls == 2
  stored = json.loads(str(np.load(info["path"])["protocol"]))
  assert stored["weights_sha256"] == "bbb"
  # Other real images behind the same (dataset, split, resolution, backbone, N): recomputed.
  _, _, _, info = evaluate.reference_features(b, *args, images[::-1].copy(), str(tmp_path))
  assert info["cache"] == "recomputed" and b.calls == 3
  # A damaged file: recomputed, not an error.
  open(info["path"], "wb").write(b"not an npz")
  _, _, _, info = evaluate.reference_features(b, *args, images[::-1].copy(), str(tmp_path))
  assert info["cache"] == "recomputed" and b.calls == 4


def test_settings_from_config_and_errors():
  import ml_collections
  from igan_jax.config import ConfigError
  c = tiny_config()
  s = evaluate.settings(c)
  assert s["num_samples"] == 10_000 and s["seeds"] == [0, 1, 2]
  assert s["backbones"] == ("classifier", "inception")
  c.eval = ml_collections.ConfigDict(dict(num_samples=500, backbones="inception",
                                          inception_samples=100))
  s = evaluate.settings(c, seeds=[4, 7])
  assert s["num_samples"] == 500 and s["backbones"] == ("inception",) and s["seeds"] == [4, 7]
  assert evaluate.samples_for("inception", s) == 100
  assert evaluate.samples_for("classifier", s) == 500
  with pytest.raises(ConfigError, match="backbones"):
    evaluate.settings(c, backbones=("clip",))
  with pytest.raises(ConfigError, match="num_samples"):
    evaluate.settings(c, num_samples=3)


def run_cli(args, cache):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", IGAN_JAX_CACHE=cache)
  return subprocess.run([sys.executable, "-c", MOCK_MAIN] + args, cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_evaluate_reuses_the_cache(run, tmp_path):
  cfg = tmp_path / "tiny_eval.py"
  cfg.write_text(CONFIG_FILE)
  r = run_cli([f"--config={cfg}", f"--workdir={run['workdir']}", "--mode=evaluate",
               "--checkpoint=2"], run["cache"])
  assert r.returncode == 0, r.stderr[-3000:]
  assert "classifier" in r.stdout and "floor" in r.stdout and "written to" in r.stdout
  # A second evaluation of step 2 goes beside the first record, which stays as it was.
  first_record = json.load(open(os.path.join(run["workdir"], "eval", "2.json")))
  assert sorted(first_record["backbones"]) == sorted(run["record"]["backbones"])
  assert "2.1.json" in r.stdout
  rec = json.load(open(os.path.join(run["workdir"], "eval", "2.1.json")))
  b = rec["backbones"]["classifier"]
  assert b["reference"]["real"]["cache"] == "hit" and b["reference"]["floor"]["cache"] == "hit"
  assert rec["skipped"] == {} and list(rec["backbones"]) == ["classifier"]
  # Same checkpoint, latents and real set as the in-process run: the same numbers.
  first = run["record"]["backbones"]["classifier"]
  assert b["mean"]["fid"] == pytest.approx(first["mean"]["fid"], rel=1e-6)


def one_line_error(r):
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert r.returncode == 2, r.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith("igan_jax: error:"), r.stderr[-3000:]
  return lines[0]


@pytest.mark.slow
def test_cli_errors_are_one_line(run, tmp_path):
  cfg = tmp_path / "tiny_eval.py"
  cfg.write_text(CONFIG_FILE)
  empty = tmp_path / "empty"
  empty.mkdir()
  msg = one_line_error(run_cli([f"--config={cfg}", f"--workdir={empty}", "--mode=evaluate"],
                               run["cache"]))
  assert "no checkpoint" in msg and "--mode=train" in msg
  assert os.listdir(empty) == []  # nothing written
  msg = one_line_error(run_cli([f"--config={cfg}", f"--workdir={run['workdir']}",
                                "--mode=evaluate", "--checkpoint=7"], run["cache"]))
  assert "no checkpoint 7" in msg and "available: 2" in msg
