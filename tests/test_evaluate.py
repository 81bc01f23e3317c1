"""evaluate_workdir end to end on a tiny trained workdir (TFDS mock data), the reference cache,
class metrics, visible skipping of a backbone, `python -m igan_jax.main --mode=evaluate`, and the
real sets of CelebA- and LSUN-shaped data (96×96×3, a toy backbone)."""
import json
import math
import os

import numpy as np
import pytest

from helpers import run_cli, tiny_config, write_workdir
from igan_jax.evaluation import reference
from igan_jax.evaluation import settings as eval_settings
from igan_jax.evaluation import workdir as evaluation
from igan_jax.evaluation.backbones import Backbone
from igan_jax.evaluation.metrics import class_metrics
from igan_jax.evaluation.table import format_table

TESTS = os.path.dirname(os.path.abspath(__file__))
N, SEEDS, MOCK_EXAMPLES = 120, 2, 160

# A config file for the CLI: the tests' tiny config with its eval section set for a small run
# (updated, not replaced: config.validate checks every eval key).
CONFIG_FILE = f"""
import sys
sys.path.insert(0, {TESTS!r})
from helpers import tiny_config

def get_config():
  c = tiny_config()
  c.eval.update(dict(num_samples={N}, seeds={SEEDS}, backbones="classifier", inception_samples=0))
  return c
"""


def mock_data():
  import tensorflow_datasets as tfds
  return tfds.testing.mock_data(num_examples=MOCK_EXAMPLES)


def make_workdir(path, config, step=2):
  """A workdir as training leaves it (checkpoints/<step>, config.json), without training:
  evaluation only restores and generates, so an initialised state saved as step `step` serves,
  and no training step is compiled."""
  import jax.numpy as jnp
  from igan_jax.state import create_train_state
  state = create_train_state(config).replace(step=jnp.asarray(step, jnp.int32))
  return write_workdir(path, config, state)


# Tests that use `run` are marked slow: the evaluation (two seeds, the classifier's reference
# and floor features) takes ~15 s.
@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """One evaluation of a tiny step-2 workdir: classifier backbone, Inception made
  unavailable."""
  from igan_jax.evaluation import inception
  from igan_jax.evaluation.inception_weights import WeightsError

  root = tmp_path_factory.mktemp("eval")
  workdir = make_workdir(str(root / "wd"), tiny_config())
  cache = str(root / "cache")

  def no_weights(*a, **k):
    raise WeightsError("test: offline, no FID Inception weights")

  mp = pytest.MonkeyPatch()
  mp.setattr(inception, "load_params", no_weights)
  try:
    with mock_data():
      record = evaluation.evaluate_workdir(tiny_config(), workdir, num_samples=N,
                                           seeds=SEEDS, backbones=("classifier", "inception"),
                                           cache_dir=cache)
  finally:
    mp.undo()
  return dict(workdir=workdir, cache=cache, record=record)


@pytest.mark.slow  # the `run` fixture evaluates (~15 s)
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


@pytest.mark.slow  # the `run` fixture evaluates (~15 s)
def test_unavailable_backbone_is_skipped_visibly(run):
  rec = run["record"]
  assert "inception" not in rec["backbones"]
  assert "offline" in rec["skipped"]["inception"]
  assert "SKIPPED" in format_table(rec)


@pytest.mark.slow  # the `run` fixture evaluates (~15 s)
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
  first = evaluation.record_path(workdir, 600)
  assert first == os.path.join(workdir, "eval", "600.json")
  assert evaluation.record_path(workdir, 600) == first  # nothing written yet
  open(first, "w").write("{}")
  second = evaluation.record_path(workdir, 600)
  assert second == os.path.join(workdir, "eval", "600.1.json")
  open(second, "w").write("{}")
  assert evaluation.record_path(workdir, 600).endswith("600.2.json")
  assert evaluation.record_path(workdir, 700).endswith("700.json")
  assert evaluation.record_path(workdir, "best").endswith("best.json")


def test_class_metrics_by_hand():
  labels = np.repeat(np.arange(4), 25)  # uniform over 4 classes
  collapsed = np.zeros((100, 4))
  collapsed[:, 2] = 5.0  # every sample predicted as class 2
  m = class_metrics(collapsed, labels, 4)
  assert m["histogram"] == [0, 0, 100, 0] and m["entropy"] == 0.0
  assert m["kl_to_real"] == pytest.approx(math.log(4)) and m["classes_ge_1pct"] == 1
  m = class_metrics(np.eye(4)[labels] * 9, labels, 4)
  assert m["entropy"] == pytest.approx(math.log(4)) and m["kl_to_real"] == pytest.approx(0)
  assert m["classes_ge_1pct"] == 4


class CountingBackbone(Backbone):
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
  f1, _, s1, info = reference.reference_features(b, *args, images, str(tmp_path))
  assert info["cache"] == "miss" and b.calls == 1 and os.path.exists(info["path"])
  f2, _, s2, info = reference.reference_features(b, *args, images, str(tmp_path))
  assert info["cache"] == "hit" and b.calls == 1
  np.testing.assert_array_equal(f1, f2)
  np.testing.assert_array_equal(s1.cov(), s2.cov())
  # Other weights (same file name): recomputed and overwritten.
  b.protocol["weights_sha256"] = "bbb"
  _, _, _, info = reference.reference_features(b, *args, images, str(tmp_path))
  assert info["cache"] == "recomputed" and b.calls == 2
  stored = json.loads(str(np.load(info["path"])["protocol"]))
  assert stored["weights_sha256"] == "bbb"
  # Other real images behind the same (dataset, split, resolution, backbone, N): recomputed.
  _, _, _, info = reference.reference_features(b, *args, images[::-1].copy(), str(tmp_path))
  assert info["cache"] == "recomputed" and b.calls == 3
  # A damaged file: recomputed, not an error.
  open(info["path"], "wb").write(b"not an npz")
  _, _, _, info = reference.reference_features(b, *args, images[::-1].copy(), str(tmp_path))
  assert info["cache"] == "recomputed" and b.calls == 4


def test_settings_from_config_and_errors():
  import ml_collections
  from igan_jax.config import ConfigError, validate
  from igan_jax.errors import UserError
  c = tiny_config()
  s = eval_settings.settings(c)
  assert s["num_samples"] == 10_000 and s["seeds"] == [0, 1, 2]
  assert s["backbones"] == ("classifier", "inception")
  c.eval = ml_collections.ConfigDict(dict(num_samples=500, backbones="inception",
                                          inception_samples=100))
  s = eval_settings.settings(c, seeds=[4, 7])
  assert s["num_samples"] == 500 and s["backbones"] == ("inception",) and s["seeds"] == [4, 7]
  assert eval_settings.samples_for("inception", s) == 100
  assert eval_settings.samples_for("classifier", s) == 500
  assert s["train_num_samples"] == 2_000 and s["train_backbone"] == "auto"  # the defaults
  with pytest.raises(eval_settings.SettingsError, match="backbones"):
    eval_settings.settings(c, backbones=("clip",))
  with pytest.raises(eval_settings.SettingsError, match="num_samples"):
    eval_settings.settings(c, num_samples=3)
  with pytest.raises(TypeError, match="no_such"):
    eval_settings.settings(c, no_such=1)
  assert issubclass(eval_settings.SettingsError, UserError)
  assert issubclass(eval_settings.EvaluationError, UserError)
  # The one check also runs when a config loads: a bad config.eval value is a ConfigError then.
  for key, value in (("seeds", 0), ("train_backbone", "clip"), ("train_num_samples", 5)):
    bad = tiny_config()
    bad.eval[key] = value
    with pytest.raises(ConfigError, match=f"config.eval.{key}"):
      validate(bad)


def run_evaluate_cli(args, cache):
  """The command line on the mock data this file evaluates on, with its reference cache."""
  return run_cli(args, mock=MOCK_EXAMPLES, IGAN_JAX_CACHE=cache)


@pytest.mark.slow
def test_cli_evaluate_reuses_the_cache(run, tmp_path):
  cfg = tmp_path / "tiny_eval.py"
  cfg.write_text(CONFIG_FILE)
  r = run_evaluate_cli([f"--config={cfg}", f"--workdir={run['workdir']}", "--mode=evaluate",
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
  msg = one_line_error(run_evaluate_cli(
      [f"--config={cfg}", f"--workdir={empty}", "--mode=evaluate"], run["cache"]))
  assert "no checkpoint" in msg and "--mode=train" in msg
  assert os.listdir(empty) == []  # nothing written
  msg = one_line_error(run_evaluate_cli(
      [f"--config={cfg}", f"--workdir={run['workdir']}", "--mode=evaluate", "--checkpoint=7"],
      run["cache"]))
  assert "no checkpoint 7" in msg and "available: 2" in msg


# ---------------------------------------------------------------------------------------------
# The real sets of CelebA- and LSUN-shaped data (96×96×3): the one selector (reference.RealSets)
# of --mode=evaluate and of FID during training.

SHAPED_N, SHAPED_EXAMPLES = 20, 48
# The published sizes of the splits at 96×96×3 (under the mock every split is tiny).
PUBLISHED_BYTES = {("celeb_a", "test"): 19_962 * 96 * 96 * 3,
                   ("celeb_a", "train"): 162_770 * 96 * 96 * 3,
                   ("lsun/bedroom", "train"): 3_033_042 * 96 * 96 * 3}


def toy_backbone(name="inception"):
  """48 pixel values per image (every 24th pixel of 96×96×3): milliseconds where the FID
  Inception takes minutes; the metrics see its features like any backbone's."""
  def extract(images):
    return images[:, ::24, ::24, :].reshape(len(images), -1).astype(np.float32), None
  return Backbone(name, extract, dict(backbone="toy", weights_sha1="toy"))


def test_real_set_plans():
  assert reference.real_set_plan("fashion_mnist") == reference.RealSetPlan("test", "train", False)
  assert reference.real_set_plan("celeb_a") == reference.RealSetPlan("test", "train", False)
  assert not reference.real_set_plan("mnist+fashion_mnist").disjoint
  for name in ("lsun/bedroom", "lsun/bedroom+lsun/church_outdoor", "folder:/x"):
    assert reference.real_set_plan(name) == reference.RealSetPlan("train", "train", True)


@pytest.mark.parametrize("limit", [1 << 30, 0], ids=["loaded", "sampled"])
def test_lsun_reference_and_floor_are_disjoint_sets_of_train(limit, monkeypatch):
  import tensorflow_datasets as tfds
  from igan_jax.errors import UserError
  monkeypatch.setattr(reference, "LOAD_LIMIT_BYTES", limit)
  config = tiny_config("lsun/bedroom", 96)
  with tfds.testing.mock_data(num_examples=SHAPED_EXAMPLES):
    sets = reference.RealSets(config)
    ref, flo = sets.reference(SHAPED_N), sets.floor(SHAPED_N)
    alone = reference.RealSets(config).reference(SHAPED_N)
    with pytest.raises(UserError, match=str(SHAPED_EXAMPLES)):  # two halves do not fit
      reference.RealSets(config).floor(SHAPED_EXAMPLES // 2 + 1)
  assert ref.images.shape == flo.images.shape == (SHAPED_N, 96, 96, 3)
  assert ref.split == flo.split == "train" and ref.sampled == flo.sampled == (limit == 0)
  assert not {x.tobytes() for x in ref.images} & {x.tobytes() for x in flo.images}
  assert len({x.tobytes() for x in ref.images}) == SHAPED_N
  np.testing.assert_array_equal(alone.images, ref.images)  # the reference needs no floor
  assert ref.tag != flo.tag and flo.tag.endswith("floor")


@pytest.fixture(scope="module")
def rgb_state():
  """One untrained 96×96×3 generator of tiny widths (CelebA and LSUN runs share its shapes)."""
  from igan_jax.state import create_train_state
  return create_train_state(tiny_config("celeb_a", 96))


@pytest.mark.parametrize("dataset", ["celeb_a", "lsun/bedroom"])
def test_evaluate_mode_on_96x96_rgb_data(dataset, rgb_state, tmp_path, monkeypatch):
  """--mode=evaluate (evaluate_workdir) on mock CelebA and LSUN, a toy backbone. CelebA: N test
  images against N sampled from the train split, which is never loaded whole (4.5 GB at
  96×96). LSUN has no test split: both sets come from its train split, disjoint."""
  import tensorflow_datasets as tfds
  from igan_jax import data
  config = tiny_config(dataset, 96, **{"eval.backbones": "inception", "eval.seeds": 1,
                                       "eval.num_samples": SHAPED_N})
  workdir = str(tmp_path / "wd")
  write_workdir(workdir, config, rgb_state)
  monkeypatch.setattr(evaluation, "make_backbone", lambda name, *args: toy_backbone(name))
  monkeypatch.setattr(data, "dataset_bytes",
                      lambda name, res, *, split, data_dir=None: PUBLISHED_BYTES[name, split])
  loaded, load_images = [], data.load_images
  monkeypatch.setattr(data, "load_images",
                      lambda name, split, *a, **k: loaded.append(split) or load_images(
                          name, split, *a, **k))
  with tfds.testing.mock_data(num_examples=SHAPED_EXAMPLES):
    rec = evaluation.evaluate_workdir(config, workdir, cache_dir=str(tmp_path / "cache"),
                                      verbose=False)
  p, b = rec["protocol"], rec["backbones"]["inception"]
  if dataset == "celeb_a":
    assert (p["real_split"], p["floor_split"]) == ("test", "train") and loaded == ["test"]
    assert "default_rng" in b["protocol"]["real_subset"]
    assert "sample_images" in b["protocol"]["floor_subset"]
  else:
    assert (p["real_split"], p["floor_split"]) == ("train", "train") and loaded == []
    assert "first N" in b["protocol"]["real_subset"]
    assert "second N" in b["protocol"]["floor_subset"] and "disjoint" in b["protocol"]["floor"]
  assert b["protocol"]["n"] == SHAPED_N and len(b["per_seed"]) == 1
  assert math.isfinite(b["mean"]["fid"]) and b["mean"]["fid"] > 0
  assert math.isfinite(b["floor"]["fid"]) and b["floor"]["fid"] >= -1e-6
  assert b["reference"]["real"]["path"] != b["reference"]["floor"]["path"]
  assert rec["path"] == os.path.join(workdir, "eval", "0.json") and os.path.exists(rec["path"])
  assert "floor = train vs" in format_table(rec)
