"""The ablation command (igan_jax/ablation.py): each row changes exactly one value of the default
recipe, back to base_config()'s; its plan, its page and its errors."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from igan_jax import ablation, config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _value(cfg, dotted):
  for part in dotted.split("."):
    cfg = cfg[part]
  return cfg


def test_each_revert_row_sets_back_exactly_its_keys_of_the_measured_recipe():
  base = config_lib.base_config()
  recipe_keys = set(config_lib.MEASURED_RECIPE)
  covered = set()
  for row, keys, _ in ablation.REVERTS:
    overrides = ablation.row_overrides(row)
    assert set(overrides) == set(keys) <= recipe_keys
    assert all(value == _value(base, key) for key, value in overrides.items())
    assert any(value != config_lib.MEASURED_RECIPE[key] for key, value in overrides.items())
    covered |= set(keys)
  assert covered == recipe_keys  # every measured value has its row
  assert ablation.row_overrides(ablation.BASELINE) == {}
  with pytest.raises(ablation.ReproduceError, match="unknown ablation row"):
    ablation.row_overrides("nope")


def test_every_row_builds_a_valid_config():
  for row in ablation.ROWS:
    cfg = config_lib.load_config(os.path.join(ROOT, ablation.EXPERIMENT), "igan", check=False)
    config_lib.apply_overrides(cfg, ablation.row_overrides(row))
    config_lib.validate(cfg)


def test_plan_covers_every_row_first_and_writes_flags_the_cli_reads(tmp_path):
  runs = ablation.plan(str(tmp_path), ["igan", "dropout", "paper_lr"], (0, 1), (0, 1, 2))
  assert [r.name for r in runs] == ["igan_seed0", "dropout_seed0", "paper_lr_seed0",
                                    "igan_seed1", "dropout_seed1", "paper_lr_seed1",
                                    "igan_seed2"]
  assert runs[1].overrides == ("--config.model.dropout=0.2",)
  assert runs[2].overrides == ("--config.optim.schedule=igan_decay",
                               "--config.optim.d_init_lr=0.002", "--config.optim.d_end_lr=0.0002")
  assert all(r.variant == "igan" for r in runs)
  assert "dropout 0.2" in ablation.describe("dropout")


def _summary(tmp_path, row, seed, fid):
  grid = tmp_path / f"{row}{seed}.png"
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(grid)
  return dict(run=f"{row}_seed{seed}", row=row, variant="igan", seed=seed, grid=str(grid),
              classifier_fid=fid, classifier_floor=0.56, inception_fid=fid / 2,
              inception_floor=12.5, spike_ratio=2.0, machines=["x"],
              overrides=[f"--config.{k}={v}" for k, v in ablation.row_overrides(row).items()],
              recipe=ablation.row_recipe(row))


def test_page_gives_means_and_the_change_against_the_default(tmp_path):
  summaries = [_summary(tmp_path, "igan", 0, 200.0), _summary(tmp_path, "igan", 1, 220.0),
               _summary(tmp_path, "dropout", 0, 250.0), _summary(tmp_path, "dropout", 1, 260.0)]
  rows = ablation.aggregate(summaries, labels={r: ablation.describe(r) for r in ("igan",
                                                                                  "dropout")})
  ablation.add_deltas(rows)
  assert rows[1]["fid_change"] == (45.0, None) and rows[0]["fid_change"] == (0.0, None)
  assert rows[1]["inception_change"] == (22.5, None)
  root = tmp_path / "root"
  page = ablation.write_page(str(root), rows, summaries, 1000,
                             dict(classifier=10_000, inception=2_000),
                             "python -m igan_jax.ablation", ["python -m igan_jax.main ..."],
                             missing=["igan_seed2"])
  text = open(page).read()
  assert "**Partial**: 1 planned run(s) not trained yet, so not in the table: igan_seed2." in text
  # row | seeds | classifier FID | Δ | Inception FID | ...
  assert ("| dropout 0.2 in G: `model.dropout=0.2` | 2 | 255.0 ± 7.1 | +45.0 | 127.5 ± 3.5 | "
          "+22.5 |" in text)
  assert "floor 0.56" in text and "N = 2,000" in text and "floor 12.50" in text
  assert sorted(os.listdir(root / "ablation")) == ["dropout_seed0.png", "igan_seed0.png"]
  docs = tmp_path / "docs"
  target = ablation.copy_to_docs(str(root), str(docs))
  assert "](ablation_table/dropout_seed0.png)" in open(target).read()
  assert json.loads((root / "ablation.json").read_text())["rows"][1]["row"] == "dropout"
  # A study of another length gets its own name beside it; its JSON has one run per line.
  other = ablation.copy_to_docs(str(root), str(docs), name="ablation_3000")
  assert other == str(docs / "ablation_3000.md")
  assert "](ablation_3000/dropout_seed0.png)" in open(other).read()
  assert sorted(os.listdir(docs / "ablation_3000")) == ["dropout_seed0.png", "igan_seed0.png"]
  text = (docs / "ablation_3000.json").read_text()
  data = json.loads(text)
  assert [r["run"] for r in data["runs"]] == [s["run"] for s in summaries]
  run_lines = [line for line in text.splitlines() if line.startswith('    {"')]
  assert len(run_lines) == len(summaries) + len(data["rows"])
  assert json.loads(run_lines[0].rstrip(","))["row"] == "igan"


def test_a_table_keeps_the_runs_an_earlier_table_recorded(tmp_path, monkeypatch, capsys):
  # The runs of an earlier table whose workdirs are gone (a new machine) stay in the table from
  # its JSON; a record of another recipe, length or protocol is not taken for the planned run.
  monkeypatch.chdir(tmp_path)
  first = tmp_path / "first"
  planned = {r.name: r for r in ablation.plan(str(first), ["igan", "dropout"], (0, 1), (0, 1))}
  summaries = []
  for name, fid in (("igan_seed0", 300.0), ("igan_seed1", 280.0), ("dropout_seed0", 320.0),
                    ("dropout_seed1", 310.0)):
    run = planned[name]
    summaries.append(dict(_summary(tmp_path, run.row, run.seed, fid), overrides=list(run.overrides),
                          step=1000, classifier_n=10_000, inception_n=2_000, workdir=run.workdir))
  summaries[3]["step"] = 500  # another length: not dropout_seed1's record
  rows = ablation.aggregate(summaries, labels={})
  ablation.write_page(str(first), rows, summaries, 1000, dict(classifier=10_000, inception=2_000),
                      "python -m igan_jax.ablation", [])
  docs = tmp_path / "docs"
  ablation.copy_to_docs(str(first), str(docs))
  record = json.loads((docs / "ablation_table.json").read_text())
  assert record["runs"][0]["workdir"] == os.path.join("first", "igan_seed0")  # no machine path
  assert record["runs"][0]["grid"] == os.path.join("docs", "ablation_table", "igan_seed0.png")
  for f in (tmp_path / "first").glob("*.json"):
    f.unlink()
  args = ["--root=second", "--rows=igan,dropout", "--seeds=0,1", "--baseline_seeds=0,1",
          "--stage=table", "--recorded=docs/ablation_table.json", "--docs=docs"]
  assert ablation.main(args) == 0
  out = capsys.readouterr().out
  assert "3 run(s) from docs/ablation_table.json: igan_seed0, dropout_seed0, igan_seed1" in out
  assert "not trained yet (not in the table): dropout_seed1" in out
  text = (docs / "ablation_table.md").read_text()
  assert "Recorded by an earlier table" in text and "igan_seed0, dropout_seed0, igan_seed1" in text
  assert "| 1 | 320.0 | +30.0 |" in text  # dropout's one seed against the default's mean
  assert (docs / "ablation_table" / "igan_seed0.png").exists()
  # Evaluated with another N: the record is not this table's.
  assert ablation.main(args + ["--num_samples=2000"]) == 2
  assert "no run under" in capsys.readouterr().err
  for bad, needle in (("nothing.json", "cannot read it"),
                      ("docs/ablation_table.md", "not the JSON")):
    assert ablation.main(args[:-2] + [f"--recorded={bad}"]) == 2
    assert needle in capsys.readouterr().err


def test_runs_on_two_kinds_of_machine_are_one_line_per_kind(tmp_path, monkeypatch, capsys):
  # The same seed on another kind of CPU is another run: a recorded run of kind A stays beside
  # this machine's run of the same name (kind B), a recorded run of kind B does not (it would
  # be this very run twice), and each row is compared with the default on its own kind.
  monkeypatch.chdir(tmp_path)
  planned = {r.name: r for r in ablation.plan("runs", ["igan", "dropout"], (0,), (0,))}
  def summary(name, fid, kind):
    run = planned[name]
    return dict(_summary(tmp_path, run.row, run.seed, fid), overrides=list(run.overrides),
                step=1000, classifier_n=10_000, inception_n=2_000, machines=[kind])
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "ablation.json").write_text(json.dumps(dict(runs=[
      summary("igan_seed0", 300.0, "A"), summary("dropout_seed0", 290.0, "B")])))
  here = {"igan_seed0": summary("igan_seed0", 200.0, "B"),
          "dropout_seed0": summary("dropout_seed0", 230.0, "B")}
  monkeypatch.setattr(ablation, "trained", lambda workdir, it: True)
  monkeypatch.setattr(ablation, "evaluate", lambda run, step, protocol, log: {})
  monkeypatch.setattr(ablation, "summarise", lambda run, step, record: here[run.name])
  assert ablation.main(["--root=runs", "--rows=igan,dropout", "--seeds=0", "--baseline_seeds=0",
                        "--stage=table", "--recorded=old/ablation.json"]) == 0
  assert "1 run(s) from old/ablation.json: igan_seed0" in capsys.readouterr().out
  text = (tmp_path / "runs" / "ablation.md").read_text()
  assert "| default recipe (`igan`) — B | 1 | 200.0 | +0.0 |" in text
  assert "| dropout 0.2 in G: `model.dropout=0.2` — B | 1 | 230.0 | +30.0 |" in text
  assert "| default recipe (`igan`) — A | 1 | 300.0 | +0.0 |" in text
  assert "290.0" not in text  # kind B's record of dropout_seed0 is the run trained here
  # This machine's igan_seed0 grid does not overwrite the recorded one of the same name.
  assert "](ablation/igan_seed0-b.png)" in text
  assert os.path.exists(tmp_path / "runs" / "ablation" / "igan_seed0-b.png")
  data = json.loads((tmp_path / "runs" / "ablation.json").read_text())
  assert [(r["run"], r["machines"]) for r in data["runs"]] == [
      ("igan_seed0", ["B"]), ("igan_seed0", ["A"]), ("dropout_seed0", ["B"])]
  # Read back on a third machine with no run of its own, both kinds' igan_seed0 come back
  # (one name, two records).
  monkeypatch.setattr(ablation, "trained", lambda workdir, it: False)
  assert ablation.main(["--root=third", "--rows=igan,dropout", "--seeds=0", "--baseline_seeds=0",
                        "--stage=table", "--recorded=runs/ablation.json"]) == 0
  assert "3 run(s) from runs/ablation.json" in capsys.readouterr().out
  again = json.loads((tmp_path / "third" / "ablation.json").read_text())
  assert [(r["run"], r["machines"]) for r in again["runs"]] == [
      ("igan_seed0", ["B"]), ("igan_seed0", ["A"]), ("dropout_seed0", ["B"])]


def test_a_record_of_another_recipe_is_not_the_planned_run(tmp_path, monkeypatch):
  # Flags are relative to the default recipe of the day a run trained: after the default changes
  # (here: the resize up-sampler), an old default run has the same name and no flags, and must
  # not stand for the new default in a table.
  run = ablation.plan(str(tmp_path), ["igan"], (0,), (0,))[0]
  record = dict(_summary(tmp_path, "igan", 0, 300.0), overrides=[], step=1000,
                classifier_n=10_000, inception_n=2_000)
  protocol = dict(classifier=10_000, inception=2_000)
  today = ablation.row_recipe("igan")
  assert len(ablation.recorded_summaries(run, 1000, protocol, {run.name: [record]},
                                         recipe=today)) == 1
  new_default = dict(today, **{"model.skip_upsample": "resize"})
  assert ablation.recorded_summaries(run, 1000, protocol, {run.name: [record]},
                                     recipe=new_default) == []
  assert ablation.recipe_differences(record["recipe"], new_default) == [
      "model.skip_upsample: 'patch' vs 'resize'"]
  # A key the record lacks (added to the package after it trained) is base_config()'s value.
  older = dict(record, recipe={k: v for k, v in today.items() if k != "loss.d_bn_batch"})
  assert ablation.recipe_differences(older["recipe"], today) == []
  assert ablation.recipe_differences(
      older["recipe"], dict(today, **{"loss.d_bn_batch": "joint"})) == [
      "loss.d_bn_batch: 'separate' vs 'joint'"]
  # A record with no recipe (written before recipes were recorded) matches nothing.
  bare = {k: v for k, v in record.items() if k != "recipe"}
  assert ablation.recorded_summaries(run, 1000, protocol, {run.name: [bare]}, recipe=today) == []
  # The study's --train_flag values are part of the planned recipe.
  flagged = ablation.row_recipe("igan", train_flags=[
      "--config.model.dtype=bfloat16", "--config.n_critic=3", "--config.loss.gp_weight=10",
      "--config.model.d_input_norm=true", "--config.model.d_widths=(32, 64)"])
  assert (flagged["model.dtype"], flagged["n_critic"], flagged["loss.gp_weight"],
          flagged["model.d_input_norm"], flagged["model.d_widths"]) == (
              "bfloat16", 3, 10.0, True, [32, 64])
  # A workdir of another recipe under --root is refused before anything trains, saying why.
  os.makedirs(run.workdir)
  cfg = config_lib.load_config(os.path.join(ROOT, ablation.EXPERIMENT), "igan")
  with open(os.path.join(run.workdir, "config.json"), "w") as f:
    json.dump(cfg.to_dict(), f, default=list)
  ablation.check_trained_recipes([run], {run.name: today})
  with pytest.raises(ablation.ReproduceError, match=r"another recipe.*model.skip_upsample: "
                     r"'patch' vs 'resize'.*new --root"):
    ablation.check_trained_recipes([run], {run.name: new_default})


def test_command_errors_and_dry_run(tmp_path, capsys):
  assert ablation.main([f"--root={tmp_path}", "--rows=igan,nope"]) == 2
  assert "unknown ablation row 'nope'" in capsys.readouterr().err
  assert ablation.main([f"--root={tmp_path}", "--seeds=a"]) == 2
  assert "comma-separated integers" in capsys.readouterr().err
  assert ablation.main([f"--root={tmp_path}", "--stage=table"]) == 2
  assert "no run under" in capsys.readouterr().err
  assert ablation.main([f"--root={tmp_path}", "--dry_run", "--rows=igan,n_critic_3"]) == 0
  out = capsys.readouterr().out
  assert out.count("would run:") == 5 and "--config.n_critic=3" in out


def test_a_combination_row_sets_every_value_of_its_parts_from_the_default_seeds(tmp_path):
  combo = "resize_skip+fake_label"
  assert ablation.row_overrides(combo) == {**ablation.row_overrides("resize_skip"),
                                           **ablation.row_overrides("fake_label")}
  cfg = config_lib.load_config(os.path.join(ROOT, ablation.EXPERIMENT), "igan", check=False)
  config_lib.apply_overrides(cfg, ablation.row_overrides(combo))
  config_lib.validate(cfg)
  assert cfg.model.skip_upsample == "resize" and cfg.loss.fake_label == 0.1
  runs = ablation.plan(str(tmp_path), ["igan", combo, "dropout"], (0, 1), (0, 1, 2))
  assert [r.name for r in runs if r.row == combo] == [f"{combo}_seed{s}" for s in (0, 1, 2)]
  assert [r.name for r in runs if r.row == "dropout"] == ["dropout_seed0", "dropout_seed1"]
  assert set(runs[1].overrides) == {"--config.model.skip_upsample=resize",
                                    "--config.loss.fake_label=0.1"}
  text = ablation.describe(combo)
  assert "bilinear resize" in text and "fake label smoothed" in text
  for bad, needle in (("igan+dropout", "other than 'igan'"), ("dropout+dropout", "different"),
                      ("dropout+", "different"), ("dropout+nope", "unknown ablation row")):
    with pytest.raises(ablation.ReproduceError, match=needle):
      ablation.row_overrides(bad)


def test_combination_parts_that_disagree_are_refused(monkeypatch):
  monkeypatch.setattr(ablation, "CANDIDATES", ablation.CANDIDATES + (
      ("ps_skip", {"model.skip_upsample": "patch"}, "x"),))
  with pytest.raises(ablation.ReproduceError, match="model.skip_upsample to 'resize' and 'patch'"):
    ablation.row_overrides("resize_skip+ps_skip")
