"""The command line end to end on tfds.testing.mock_data, and resume through the CLI. Bad input:
tests/errors_table.py, run by tests/test_errors.py; the helpers: tests/helpers.py."""
import json
import os

import numpy as np
import pytest

from helpers import TINY, assert_trees_equal, load_final_state, run_cli


@pytest.mark.slow
def test_end_to_end_on_mock_data(trained_workdir):
  workdir, r = trained_workdir
  assert "step 4/4" in r.stderr
  assert sorted(os.listdir(os.path.join(workdir, "samples"))) == [
      "step_000002.png", "step_000004.png"]
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [row["step"] for row in rows] == [2, 4]
  for key in ("d_loss", "g_loss", "gp", "lr_d", "lr_g", "it_per_s"):
    assert all(np.isfinite(row[key]) for row in rows), key
  np.testing.assert_allclose(rows[0]["lr_g"], 1.5 * rows[0]["lr_d"], rtol=1e-6)
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  cfg = json.load(open(os.path.join(workdir, "config.json")))
  assert cfg["num_iterations"] == 4 and cfg["model"]["name"] == "igan"
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())
  assert steps == [2, 4]


@pytest.mark.slow
def test_cli_resume_is_bit_exact(trained_workdir, tmp_path):
  resumed = str(tmp_path / "resumed")
  straight, first = trained_workdir  # the same command, 4 iterations straight
  # k = 2 then the same command again to 4, against 4 straight.
  outputs = []
  for iters in (2, 4):
    r = run_cli(["--config=experiments/fashion_mnist.py", f"--workdir={resumed}",
                 f"--config.num_iterations={iters}"] + TINY, mock=True)
    assert r.returncode == 0, r.stderr[-3000:]
    outputs.append(r.stdout)
  assert "from step 2" in outputs[1] and "resumed" not in first.stdout
  a, b = load_final_state(resumed), load_final_state(straight)
  assert int(a.step) == int(b.step) == 4
  assert_trees_equal(a, b)
