"""The reproduction-table command (igan_jax/reproduce.py): its plan, its skip rules, its numbers,
and the whole command on tiny runs of real Fashion-MNIST (trained, evaluated, tabulated, then
skipped on the second call)."""
import glob
import json
import math
import os

import pytest

from igan_jax import reproduce, reproduction_page

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_plan_trains_every_models_first_seed_first(tmp_path):
  runs = reproduce.plan(str(tmp_path), ["igan", "dcgan"], {"igan": (0, 1, 2), "dcgan": (0, 1)})
  assert [r.name for r in runs] == ["igan_seed0", "dcgan_seed0", "igan_seed1", "dcgan_seed1",
                                    "igan_seed2"]
  assert runs[0].workdir == os.path.join(str(tmp_path), "igan_seed0")


def test_parse_seeds():
  assert reproduce.parse_seeds([], ["igan", "wgan_gp", "igan_vn"]) == {
      "igan": (0, 1, 2), "wgan_gp": (0, 1), "igan_vn": (0,)}
  assert reproduce.parse_seeds(["igan=4,5"], ["igan"]) == {"igan": (4, 5)}
  with pytest.raises(reproduce.ReproduceError, match="variant of --rows"):
    reproduce.parse_seeds(["dcgan=1"], ["igan"])
  with pytest.raises(reproduce.ReproduceError, match="integers"):
    reproduce.parse_seeds(["igan=a"], ["igan"])


def test_train_command_is_the_projects_own_and_the_same_on_every_call(tmp_path):
  run = reproduce.Run("wgan_gp", 1, str(tmp_path / "wgan_gp_seed1"))
  cmd = reproduce.train_command(run, 3000, 300, python="python", extra=["--config.loop=scan"])
  assert cmd == ["python", "-m", "igan_jax.main", "--config=experiments/fashion_mnist.py:wgan_gp",
                 f"--workdir={run.workdir}", "--config.num_iterations=3000", "--config.seed=1",
                 "--config.eval_every=300", "--config.loop=scan"]
  assert cmd == reproduce.train_command(run, 3000, 300, python="python",
                                        extra=["--config.loop=scan"])


def test_a_row_of_changes_names_its_run_and_adds_its_flags_before_the_tables(tmp_path):
  run = reproduce.Run("igan", 0, str(tmp_path / "dropout_seed0"), row="dropout",
                      overrides=("--config.model.dropout=0.2",))
  assert run.name == "dropout_seed0"
  cmd = reproduce.train_command(run, 1000, 250, python="python", extra=["--config.loop=scan"],
                                experiment="/x/fashion_mnist.py")
  assert cmd[3] == "--config=/x/fashion_mnist.py:igan"
  assert cmd[-2:] == ["--config.model.dropout=0.2", "--config.loop=scan"]


def test_find_experiment_from_any_directory_or_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # not the repository: found beside the package
  assert reproduce.find_experiment(reproduce.EXPERIMENT) == os.path.join(ROOT, reproduce.EXPERIMENT)
  own = tmp_path / "mine.py"
  own.write_text("")
  assert reproduce.find_experiment("mine.py") == str(own)
  with pytest.raises(reproduce.ReproduceError, match="--experiment=PATH"):
    reproduce.find_experiment("experiments/nope.py")
  assert reproduce.main([f"--root={tmp_path}", "--experiment=nope.py", "--dry_run"]) == 2


def test_trained_needs_the_committed_step(tmp_path):
  ckpt = tmp_path / "checkpoints"
  (ckpt / "200").mkdir(parents=True)
  (ckpt / "300.orbax-checkpoint-tmp-17").mkdir()  # a save cut short
  assert not reproduce.trained(str(tmp_path), 300)
  assert reproduce.trained(str(tmp_path), 200)
  assert reproduce._latest_step(str(tmp_path)) == 200
  assert reproduce._latest_step(str(tmp_path / "nope")) is None


def _record(step, seeds, ns):
  return dict(step=step, protocol=dict(seeds=seeds),
              backbones={name: dict(protocol=dict(n=n)) for name, n in ns.items()})


def test_find_evaluation_reuses_only_the_same_protocol(tmp_path):
  (tmp_path / "eval").mkdir()
  want = reproduce.eval_protocol(10_000, 2_000)

  def write(name, record):
    (tmp_path / "eval" / name).write_text(json.dumps(record))

  write("300.json", _record(300, [0], {"classifier": 10_000}))  # no Inception
  write("300.1.json", _record(300, [0, 1, 2], {"classifier": 10_000, "inception": 2_000}))
  write("200.json", _record(200, [0], {"classifier": 10_000, "inception": 2_000}))
  (tmp_path / "eval" / "300.2.json").write_text('{"step": 300, "proto')  # cut short
  assert reproduce.find_evaluation(str(tmp_path), 300, want) is None
  write("300.3.json", _record(300, [0], {"classifier": 10_000, "inception": 2_000}))
  assert reproduce.find_evaluation(str(tmp_path), 300, want)["backbones"]["inception"]
  # Without Inception (N = 0) the classifier-only record is enough.
  assert reproduce.find_evaluation(str(tmp_path), 300, reproduce.eval_protocol(10_000, 0))


def test_mean_sd_aggregate_and_table():
  assert reproduction_page.mean_sd([1.0]) == (1.0, None)
  mean, sd = reproduction_page.mean_sd([1.0, 2.0, 6.0])
  assert mean == 3.0 and sd == pytest.approx(math.sqrt(7.0))
  runs = [dict(variant="igan", seed=s, classifier_fid=f, spike_ratio=2.0) for s, f in
          ((0, 100.0), (1, 110.0), (2, 120.0))]
  runs.append(dict(variant="dcgan", seed=0, classifier_fid=200.0, spike_ratio=None))
  rows = reproduction_page.aggregate(runs)
  assert [r["label"] for r in rows] == ["IGAN", "DCGAN"]
  assert rows[0]["classifier_fid"] == (110.0, 10.0) and "spike_ratio" not in rows[1]
  table = reproduction_page.markdown_table(rows).splitlines()
  assert table[2].startswith("| IGAN | 3 | 110.0 ± 10.0 | — |")
  assert table[3].startswith("| DCGAN | 1 | 200.0 | — |")


def _real_data_prepared():
  from igan_jax import data
  try:
    data.load_images("fashion_mnist", "test", None, 28)
    return True
  except Exception:  # pylint: disable=broad-except
    return False


TINY = ["--config.batch_size=8", "--config.model.channels=8", "--config.model.d_widths=(8,16)",
        "--config.num_samples=4", "--config.log_every=2", "--config.sample_every=5",
        "--config.checkpoint_every=5", "--config.eval.train_num_samples=200"]


@pytest.mark.slow
def test_reproduce_command_trains_evaluates_tabulates_then_skips(tmp_path, monkeypatch, capsys):
  if not _real_data_prepared():
    pytest.skip("Fashion-MNIST is not prepared (make data)")
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.chdir(tmp_path)  # a relative --root, as a user gives it
  root, docs = tmp_path / "table", tmp_path / "docs"
  args = ["--root=table", "--rows=igan", "--seeds=igan=0,1", "--iterations=10",
          "--eval_every=5", "--num_samples=200", "--inception_samples=0", f"--docs={docs}"]
  args += [f"--train_flag={f}" for f in TINY]
  assert reproduce.main(args) == 0
  result = json.loads((root / "reproduction.json").read_text())
  runs = result["runs"]
  assert [r["run"] for r in runs] == ["igan_seed0", "igan_seed1"]
  fids = [r["classifier_fid"] for r in runs]
  assert fids[0] != fids[1] and all(f > r["classifier_floor"] for f, r in zip(fids, runs))
  mean, sd = result["models"][0]["classifier_fid"]
  assert mean == pytest.approx(sum(fids) / 2) and sd == pytest.approx(abs(fids[0] - fids[1])
                                                                      / math.sqrt(2))
  assert [s for s, _ in runs[0]["fid_curve"]] == [5, 10]
  assert 0 < runs[0]["train_minutes"] and runs[0]["machines"]
  assert runs[0]["recipe"]["model.channels"] == 8 and runs[0]["recipe"]["n_critic"] == 1
  page = (docs / "reproduction.md").read_text()
  assert "| IGAN | 2 |" in page and str(tmp_path) not in page
  assert "--workdir=table/igan_seed1 " in page
  assert sorted(os.listdir(docs / "reproduction")) == ["fid_curves.png", "igan_seed0.png",
                                                        "igan_seed1.png"]

  # The same command again: nothing retrained, nothing re-evaluated, the same table.
  evals = sorted(glob.glob(str(root / "*" / "eval" / "*.json")))
  capsys.readouterr()
  assert reproduce.main(args) == 0
  out = capsys.readouterr().out
  assert out.count("trained to 10, skipped") == 2 and out.count("exists, reused") == 2
  assert sorted(glob.glob(str(root / "*" / "eval" / "*.json"))) == evals
  for run in ("igan_seed0", "igan_seed1"):
    assert len((root / run / "machines.jsonl").read_text().splitlines()) == 1
  assert json.loads((root / "reproduction.json").read_text())["models"] == result["models"]

  # A longer table resumes each run from its step-10 checkpoint (one run asked for: the same
  # code resumes every run; the other is left alone).
  longer = [a.replace("--iterations=10", "--iterations=15").replace("igan=0,1", "igan=0")
            for a in args]
  assert reproduce.main(longer) == 0
  lines = (root / "igan_seed0" / "machines.jsonl").read_text().splitlines()
  assert json.loads(lines[-1])["from_step"] == 10 and json.loads(lines[-1])["to_step"] == 15
  assert len((root / "igan_seed1" / "machines.jsonl").read_text().splitlines()) == 1


def test_reproduce_command_errors(tmp_path, capsys):
  assert reproduce.main([f"--root={tmp_path}", "--rows=igan,biggan"]) == 2
  assert "unknown variant 'biggan'" in capsys.readouterr().err
  assert reproduce.main([f"--root={tmp_path}", "--stage=table"]) == 2
  assert "no run under" in capsys.readouterr().err
  assert reproduce.main([f"--root={tmp_path}", "--dry_run", "--iterations=100"]) == 0
  out = capsys.readouterr().out
  assert out.count("would run:") == 7 and "--config.num_iterations=100" in out

  # A workdir holding another recipe than its variant trains today (here: the default changed to
  # the resize up-sampler after it trained) is refused before anything runs, saying why.
  from igan_jax import config as config_lib
  cfg = config_lib.load_config(os.path.join(ROOT, reproduce.EXPERIMENT), "igan")
  cfg.model.skip_upsample = "resize"
  os.makedirs(tmp_path / "igan_seed0")
  (tmp_path / "igan_seed0" / "config.json").write_text(json.dumps(cfg.to_dict(), default=list))
  assert reproduce.main([f"--root={tmp_path}", "--dry_run"]) == 2
  err = capsys.readouterr().err
  assert "igan_seed0 holds a run of another recipe" in err
  assert "model.skip_upsample: 'resize' vs 'patch'" in err and "new --root" in err
