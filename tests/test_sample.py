"""`--mode=sample` (igan_jax/sample.py): PNG files and images.npz of a checkpoint, per class for
igan_v2, deterministic in the seed, and one clear error for each thing a user can get wrong.

The workdirs are made without training (an initialised state saved as steps 2 and 4, step 4's
generator changed): sampling only restores and generates, so this keeps the tests to seconds.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import tiny_config
from igan_jax import checkpoint, sample
from igan_jax.checkpoint import CheckpointError
from igan_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 5  # odd: igan_v2's two classes get 3 and 2 images
V2_CLASSES = (3, 7)
CONFIGS = {
    "igan": {},
    "igan_v2": {"model.name": "igan_v2", "model.num_classes": 2, "data.classes": V2_CLASSES},
}


def make_workdir(path, config, best_step=None):
  """A workdir as training leaves it (checkpoints 2 and 4, config.json; with best_step, a best
  checkpoint of that step), from an initialised state: step 4's generator is step 2's × 1.5."""
  import jax
  import jax.numpy as jnp
  from igan_jax.state import create_train_state
  state2 = create_train_state(config).replace(step=jnp.asarray(2, jnp.int32))
  g4 = state2.g.replace(params=jax.tree_util.tree_map(lambda p: p * 1.5, state2.g.params))
  state4 = state2.replace(step=jnp.asarray(4, jnp.int32), g=g4)
  ckpt = checkpoint.Checkpointer(os.path.join(path, "checkpoints"))
  for state in (state2, state4):
    ckpt.save(state)
  ckpt.wait()
  ckpt.close()
  if best_step is not None:
    best = checkpoint.BestCheckpointer(checkpoint.best_directory(path), metric="fid_classifier")
    assert best.save(state2, best_step, 100.0)
    best.close()
  checkpoint.save_config(path, config.to_dict())
  return path


# Building each model's state costs ~10-40 s of compiling (2 shared cores): igan_v2 is slow.
@pytest.fixture(scope="module", params=["igan", pytest.param("igan_v2", marks=pytest.mark.slow)])
def run(request, tmp_path_factory):
  config = tiny_config(**CONFIGS[request.param])
  workdir = make_workdir(str(tmp_path_factory.mktemp(request.param) / "wd"), config,
                         best_step=2 if request.param == "igan" else None)
  return dict(name=request.param, config=config, workdir=workdir)


def load(out_dir):
  with np.load(os.path.join(out_dir, sample.NPZ_NAME)) as z:
    return {k: z[k] for k in z.files}


def png_files(out_dir):
  return sorted(os.path.relpath(os.path.join(d, f), out_dir)
                for d, _, files in os.walk(out_dir) for f in files if f.endswith(".png"))


def test_writes_pngs_and_npz_of_the_latest_checkpoint(run):
  done = sample.sample_workdir(run["config"], run["workdir"], num_images=N, seed=0)
  out = os.path.join(run["workdir"], "generated", "4")
  assert done["out_dir"] == out and done["step"] == 4 and done["num_images"] == N
  z = load(out)
  assert z["images"].shape == (N, 28, 28, 1) and z["images"].dtype == np.uint8
  assert int(z["seed"]) == 0 and int(z["step"]) == 4
  assert z["images"].std() > 0  # not a blank image set
  files = png_files(out)
  if run["name"] == "igan":
    assert "labels" not in z
    assert files == [f"{i:06d}.png" for i in range(N)]
  else:  # latent-major: image i is class i % 2, in class_<dataset label>/
    np.testing.assert_array_equal(z["labels"], [3, 7, 3, 7, 3])
    assert files == ["class_3/000000.png", "class_3/000002.png", "class_3/000004.png",
                     "class_7/000001.png", "class_7/000003.png"]
  for i in range(N):  # file i holds row i of the npz, losslessly
    label = None if "labels" not in z else int(z["labels"][i])
    png = np.asarray(Image.open(os.path.join(out, sample.image_relpath(i, label))))
    np.testing.assert_array_equal(png, z["images"][i, ..., 0])
  assert not [e for e in os.listdir(os.path.dirname(out)) if e.startswith(".")]  # no temp dir


def test_same_seed_same_images_other_seed_or_step_other_images(run, tmp_path):
  def images(name, **kw):
    done = sample.sample_workdir(run["config"], run["workdir"], num_images=N,
                                 out_dir=str(tmp_path / name), **kw)
    return done, load(done["out_dir"])["images"]

  _, a = images("a", seed=1)
  _, b = images("b", seed=1)
  np.testing.assert_array_equal(a, b)
  _, c = images("c", seed=2)
  assert not np.array_equal(a, c)
  done, d = images("d", seed=1, step="2")
  assert done["step"] == 2 and not np.array_equal(a, d)
  if run["name"] == "igan":  # the best checkpoint holds step 2's state
    done, e = images("e", seed=1, step="best")
    assert done["step"] == 2
    np.testing.assert_array_equal(d, e)


def test_errors_name_the_fix_and_write_nothing(run, tmp_path):
  config, workdir = run["config"], run["workdir"]
  with pytest.raises(UserError, match="does not exist"):
    sample.sample_workdir(config, str(tmp_path / "nope"))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(CheckpointError, match="no checkpoint .*--mode=train"):
    sample.sample_workdir(config, str(empty))
  assert os.listdir(empty) == []
  with pytest.raises(CheckpointError, match="no checkpoint 7 .*available: 2, 4"):
    sample.sample_workdir(config, workdir, step=7, out_dir=str(tmp_path / "x"))
  with pytest.raises(CheckpointError, match="checkpoint"):
    sample.sample_workdir(config, workdir, step="last", out_dir=str(tmp_path / "x"))
  if run["name"] == "igan_v2":
    with pytest.raises(CheckpointError, match="no best checkpoint"):
      sample.sample_workdir(config, workdir, step="best", out_dir=str(tmp_path / "x"))
  with pytest.raises(sample.SampleError, match="num_images"):
    sample.sample_workdir(config, workdir, num_images=0, out_dir=str(tmp_path / "x"))
  full = tmp_path / "full"
  full.mkdir()
  (full / "keep.txt").write_text("mine")
  with pytest.raises(sample.SampleError, match="not empty.*--out"):
    sample.sample_workdir(config, workdir, num_images=N, out_dir=str(full))
  assert os.listdir(full) == ["keep.txt"]
  assert not os.path.exists(tmp_path / "x")
  with pytest.raises(sample.SampleError, match="config.json"):
    sample.run_config(str(empty))


def test_run_config_is_the_workdirs(run):
  assert sample.run_config(run["workdir"]).to_dict() == run["config"].to_dict()


def run_cli(args, cwd):
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
  return subprocess.run([sys.executable, "-m", "igan_jax.main"] + args, cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=600)


def one_line_error(r):
  lines = [l for l in r.stderr.splitlines() if l.strip()]
  assert r.returncode == 2 and len(lines) == 1, r.stderr[-3000:]
  assert lines[0].startswith("igan_jax: error:"), lines
  return lines[0]


def test_cli_without_config_uses_the_workdirs(run, tmp_path):
  """From another directory, with a relative --out: the run's config.json, the given step."""
  if run["name"] != "igan":
    pytest.skip("one CLI run is enough")
  r = run_cli([f"--workdir={run['workdir']}", "--mode=sample", "--checkpoint=2",
               f"--num_images={N}", "--seed=3", "--out=imgs"], cwd=str(tmp_path))
  assert r.returncode == 0, r.stderr[-3000:]
  out = str(tmp_path / "imgs")
  assert f"{N} images of step 2 (seed 3) written to {out}" in r.stdout
  z = load(out)
  assert int(z["step"]) == 2 and int(z["seed"]) == 3 and len(png_files(out)) == N
  direct = sample.sample_workdir(run["config"], run["workdir"], step=2, seed=3, num_images=N,
                                 out_dir=str(tmp_path / "direct"))
  np.testing.assert_array_equal(z["images"], load(direct["out_dir"])["images"])


def test_cli_errors_are_one_line(tmp_path):
  msg = one_line_error(run_cli([f"--workdir={tmp_path / 'nope'}", "--mode=sample"], ROOT))
  assert "does not exist" in msg
  msg = one_line_error(run_cli(["--mode=sample"], ROOT))
  assert "--workdir is required" in msg
  msg = one_line_error(run_cli([f"--workdir={tmp_path}", "--mode=sample", "--num_images=0"],
                               ROOT))
  assert "num_images" in msg
  assert os.listdir(tmp_path) == []
