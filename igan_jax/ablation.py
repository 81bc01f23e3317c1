"""The IGAN recipe's ablation: one change at a time from today's defaults, several seeds each.

    python -m igan_jax.ablation --root=runs/ablation --docs=docs   # the whole study
    python -m igan_jax.ablation --root=runs/ablation --dry_run     # what it would run
    make ablation                                                  # the same, via make

The default recipe of `experiments/fashion_mnist.py` (variant `igan`) is the paper's model with
the values of `config.MEASURED_RECIPE`, each chosen by measurement (docs/ablation.md). Each row
of this study undoes one of them — sets it back to the value of `config.base_config()`, the
paper's stated value or our first reconstruction of an open one (docs/paper.md §4) — or adds one
candidate change (CANDIDATES), and trains `--iterations` (default 1,000) from `--seeds` training
seeds (default 0, 1; the default recipe itself 0, 1, 2). So every row answers one question: what
does this value buy, against the same recipe without it? A row `a+b` (`--rows=igan,a+b`) sets
the values of rows a and b together and trains from the default recipe's seeds: the best single
changes combined, the candidate for a new default.

Runs, skipping and resuming are those of the reproduction table (igan_jax/reproduce.py): one
workdir `<root>/<row>_seed<k>` per run, trained by the project's own command (printed before it
starts; the same call resumes a stopped run and skips a finished one), FID during training every
`--iterations` / 4 (classifier, N = 2,000), then checkpoint `--iterations` evaluated by the
classifier at N = `--num_samples` (default 10,000 vs 10,000 test images) and by FID-Inception-V3
at N = `--inception_samples` (default 2,000, as the reproduction table; 0 = none): the two
feature spaces can rank runs differently (docs/reproduction.md). The page `<root>/ablation.md`
(and `--docs=DIR`: DIR/ablation_table.md with each row's first grid under DIR/ablation_table/;
`--docs_name` names another table, e.g. a study of another length beside it) gives per row
the mean ± sd over seeds of every run-report number, and the change of the mean classifier and
Inception FID against the default recipe's (add_deltas).

A study can outlive its workdirs (a new machine, a cleaned disk). `--docs=DIR` also writes the
numbers behind the page as DIR/ablation_table.json, and `--recorded=DIR/ablation_table.json`
puts back in the table every planned run that is not trained under `--root` but was recorded
there with the same row, seed, flags, length and evaluation protocol (the page names them):

    python -m igan_jax.ablation --root=runs/ablation --stage=table --docs=docs \
        --recorded=docs/ablation_table.json

"The same" includes the recipe each run trained with (reproduce.recipe_of): a row's flags are
relative to the default recipe of the day, so once a study changes that default, the old
default's runs no longer stand for the new one, in the table or under `--root`
(check_trained_recipes refuses such a workdir, saying to give the study a new root).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Any, Sequence

from igan_jax import config as config_lib
from igan_jax.reproduce import (EXPERIMENT, ReproduceError, Run, check_trained_recipes,
                                evaluate, eval_protocol, find_experiment, page_train_commands,
                                planned_recipe, recipe_differences, summarise, train_stage,
                                trained, trained_runs)
from igan_jax.reproduction_page import (aggregate, commands_section, markdown_table, runs_table,
                                        save_page)

DEFAULT_ITERATIONS = 1_000
BASELINE = "igan"
BASELINE_SEEDS = (0, 1, 2)
DEFAULT_SEEDS = (0, 1)
DOCS_NAME = "ablation_table"  # --docs=DIR writes DIR/ablation_table.md, .json and grids
# Rows that undo one value of MEASURED_RECIPE (the keys of one change), most informative first:
# (row, the keys set back to base_config()'s values, what the row tests).
REVERTS = (
    ("paper_lr", ("optim.schedule", "optim.d_init_lr", "optim.d_end_lr"),
     "the paper's learning rate, 0.002 decaying to 0.0002 (igan_decay)"),
    ("g_output_norm", ("model.g_output_norm",), "batch norm before G's tanh"),
    ("d_input_norm", ("model.d_input_norm",), "batch norm on D's input block"),
    ("dropout", ("model.dropout",), "dropout 0.2 in G"),
    ("gp_center_1", ("loss.gp_center",), "the penalty centred at 1"),
    ("gp_bn_batch", ("loss.gp_bn",), "the penalty through train-mode batch norm"),
    ("fake_label", ("loss.fake_label",), "the fake label smoothed to 0.1"),
    ("noise_constant", ("loss.noise_anneal",), "instance noise constant (σ = 0.1)"),
    ("upsample_default", ("model.upsample_init",), "default (not ICNR) up-sampler init"),
    ("n_critic_3", ("n_critic",), "three critic updates per iteration"),
)
# Rows that add one change the default recipe does not have: (row, overrides, what it tests).
CANDIDATES = (
    ("resize_skip", {"model.skip_upsample": "resize"},
     "bilinear resize + 3×3 conv for the shortcut and branch up-samplers"),
    ("resize_main", {"model.main_upsample": "resize"},
     "bilinear resize + 3×3 conv for the main path's up-samplers"),
    ("joint_bn", {"loss.d_bn_batch": "joint"}, "one joint real + fake batch-norm batch in D"),
)
ROWS = (BASELINE,) + tuple(r[0] for r in REVERTS) + tuple(c[0] for c in CANDIDATES)
# A row "a+b" (not among the defaults of --rows) sets the values of both rows at once: the
# best single changes, tried together over the default recipe's seeds.
COMBINE = "+"
# Columns of the page: (key in a run's summary, header, format).
COLUMNS = (
    ("classifier_fid", "classifier FID", "{:.1f}"),
    ("inception_fid", "Inception FID", "{:.1f}"),
    ("inception_kid", "Inception KID ×10³", "{:.1f}"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("class_entropy", "class entropy", "{:.3f}"),
    ("mean_confidence", "confidence", "{:.3f}"),
    ("spike_ratio", "spike ratio", "{:.2f}"),
    ("period2_power", "period-2 power", "{:.4f}"),
    ("period4_power", "period-4 power", "{:.4f}"),
    ("brightness", "brightness", "{:.3f}"),
    ("train_minutes", "training minutes", "{:.1f}"),
)


def row_recipe(row: str, experiment: str = EXPERIMENT,
               train_flags: Sequence[str] = ()) -> dict[str, Any]:
  """The recipe a run of `row` trains with today (reproduce.planned_recipe)."""
  return planned_recipe(experiment, BASELINE, row_overrides(row), train_flags)


def flag_value(value: Any) -> str:
  """A config value as a `--config.key=value` flag writes it."""
  return repr(value) if isinstance(value, float) else str(value)


def combination_parts(row: str) -> list[str]:
  """The single rows a combination row "a+b+…" joins ([row] for a single row)."""
  return row.split(COMBINE)


def row_overrides(row: str) -> dict[str, Any]:
  """The config values row `row` sets on top of the default recipe; a combination "a+b" sets
  every value of a and of b (two parts that set one key to different values are refused)."""
  if COMBINE in row:
    parts = combination_parts(row)
    if BASELINE in parts or len(set(parts)) != len(parts) or "" in parts:
      raise ReproduceError(f"ablation row {row!r}: a combination joins two or more different "
                           f"rows other than {BASELINE!r} with {COMBINE!r}, e.g. "
                           f"resize_skip{COMBINE}fake_label")
    values: dict[str, Any] = {}
    for part in parts:
      for key, value in row_overrides(part).items():
        if key in values and values[key] != value:
          raise ReproduceError(f"ablation row {row!r}: its parts set {key} to "
                               f"{values[key]!r} and {value!r}")
        values[key] = value
    return values
  if row == BASELINE:
    return {}
  base = config_lib.base_config()
  for name, keys, _ in REVERTS:
    if name == row:
      values = {}
      for dotted in keys:
        node = base
        for part in dotted.split("."):
          node = node[part]
        values[dotted] = node
      return values
  for name, values, _ in CANDIDATES:
    if name == row:
      return dict(values)
  raise ReproduceError(f"unknown ablation row {row!r}; one of {', '.join(ROWS)}")


def describe(row: str) -> str:
  """The row's label on the page: what it changes, as flags."""
  if row == BASELINE:
    return "default recipe (`igan`)"
  flags = " ".join(f"`{k}={flag_value(v)}`" for k, v in row_overrides(row).items())
  texts = {name: text for name, _, text in REVERTS + CANDIDATES}
  what = " + ".join(texts[part] for part in combination_parts(row))
  return f"{what}: {flags}"


def plan(root: str, rows: Sequence[str], seeds: Sequence[int],
         baseline_seeds: Sequence[int] = BASELINE_SEEDS) -> list[Run]:
  """The runs, every row's first seed first (a study stopped early already covers each row).
  The default recipe and the combination rows train from baseline_seeds, the others from
  seeds: a combination is a candidate for the new default, compared with it seed for seed."""
  root = os.path.abspath(os.path.expanduser(root))
  per_row = []
  for row in rows:
    flags = tuple(f"--config.{k}={flag_value(v)}" for k, v in row_overrides(row).items())
    row_seeds = baseline_seeds if row == BASELINE or COMBINE in row else seeds
    per_row.append([Run("igan", s, os.path.join(root, f"{row}_seed{s}"), row=row,
                        overrides=flags) for s in row_seeds])
  depth = max((len(r) for r in per_row), default=0)
  return [runs[i] for i in range(depth) for runs in per_row if i < len(runs)]


def machine_kind(summary: dict) -> str:
  """The kind of machine a run trained on ("AMD EPYC, family 25, 2 cores"; several joined by
  " + " when it was resumed on another)."""
  return " + ".join(summary.get("machines") or ()) or "machine not recorded"


def aggregate_by_machine(summaries: Sequence[dict], labels: dict) -> list[dict]:
  """Per row and machine kind: n runs and mean / sd of every column (aggregate), each line
  labelled with its machine when the runs trained on more than one kind. The same seed on
  another kind of CPU is another run, and kinds are compared only side by side (docs/ablation.md
  §6), so a row's runs on two kinds are two lines, each against the default on its own kind."""
  kinds = list(dict.fromkeys(machine_kind(s) for s in summaries))
  order = list(dict.fromkeys(s["row"] for s in summaries))
  rows = []
  for kind in kinds:
    for row in aggregate([s for s in summaries if machine_kind(s) == kind], labels):
      row["machine"] = kind
      if len(kinds) > 1:
        row["label"] = f"{row['label']} — {kind}"
      rows.append(row)
  return sorted(rows, key=lambda r: (order.index(r["row"]), kinds.index(r["machine"])))


def add_deltas(rows: list[dict]) -> None:
  """Each row's change of the mean classifier FID and the mean Inception FID against the
  default recipe's on the same kind of machine (negative: better than the default, i.e. the
  default's value for that key is the worse one). Not paired by seed: at 1,000 iterations two
  seeds of one recipe differ by tens of FID, so the default recipe's own sd over seeds is the
  yardstick."""
  bases = {r.get("machine"): r for r in rows if r["row"] == BASELINE}
  for row in rows:
    base = bases.get(row.get("machine"))
    for key, out in (("classifier_fid", "fid_change"), ("inception_fid", "inception_change")):
      if base is not None and key in base and key in row:
        row[out] = (row[key][0] - base[key][0], None)


def _with_deltas(columns: Sequence[tuple]) -> tuple:
  """The page's columns with each FID followed by its change against the default."""
  out = []
  for column in columns:
    out.append(column)
    if column[0] == "classifier_fid":
      out.append(("fid_change", "Δ vs default", "{:+.1f}"))
    elif column[0] == "inception_fid":
      out.append(("inception_change", "Δ vs default", "{:+.1f}"))
  return tuple(out)


def load_recorded(path: str) -> dict[str, list[dict]]:
  """The runs an earlier table recorded (its JSON: `<root>/ablation.json`, or the copy that
  `--docs` writes as DIR/ablation_table.json), by run name: a list, since one name can have
  been trained on several kinds of machine. A study can outlive its workdirs (a new machine, a
  cleaned disk): a run recorded there need not be trained again to stay in the table. Each
  returned summary is marked `recorded` with the file it came from."""
  try:
    with open(path) as f:
      runs = json.load(f)["runs"]
  except OSError as e:
    raise ReproduceError(f"--recorded={path}: cannot read it ({e.strerror}); give the JSON an "
                         "earlier `python -m igan_jax.ablation` wrote (<root>/ablation.json or "
                         "DIR/ablation_table.json)") from None
  except (ValueError, KeyError, TypeError):
    raise ReproduceError(f"--recorded={path}: not the JSON of an ablation table (no list "
                         "'runs'); give <root>/ablation.json or DIR/ablation_table.json") from None
  by_name: dict[str, list[dict]] = {}
  for r in runs:
    by_name.setdefault(r["run"], []).append(dict(r, recorded=path))
  return by_name


def recorded_summaries(run: Run, iterations: int, protocol: dict,
                       recorded: dict[str, list[dict]], docs: str = "",
                       docs_name: str = DOCS_NAME, recipe: dict | None = None) -> list[dict]:
  """The recorded summaries of `run` (one per kind of machine it trained on) that are the same
  run evaluated the same way — row, seed, flags, recipe (`recipe`: the planned run's,
  row_recipe; None: not compared), step and each backbone's N; a record of another recipe,
  length or protocol is not this run's. Each grid is the recorded file where it still exists,
  else the file of that name under DIR/<docs_name>/ of --docs, else None."""
  out = []
  for s in recorded.get(run.name, ()):
    if recipe is not None and recipe_differences(s.get("recipe"), recipe):
      continue
    if (s.get("row") != run.row or s.get("seed") != run.seed
        or list(s.get("overrides", ())) != list(run.overrides) or s.get("step") != iterations
        or s.get("classifier_n") != protocol["classifier"]
        or (protocol["inception"] and s.get("inception_n") != protocol["inception"])):
      continue
    grid = s.get("grid") or ""
    if grid and not os.path.exists(grid) and docs:
      grid = os.path.join(docs, docs_name, os.path.basename(grid))
    out.append(dict(s, grid=grid if grid and os.path.exists(grid) else None))
  return out


def grid_file(summary: dict, summaries: Sequence[dict]) -> str:
  """The file name of a run's grid beside the page: a recorded run keeps its recorded file's
  name; a run trained here is <run>.png, or <run>-<machine kind>.png when it shares its name with
  a recorded run of another kind of machine (so the recorded run's grid is not overwritten)."""
  if summary.get("recorded") and summary.get("grid"):
    return os.path.basename(summary["grid"])
  twins = sum(1 for s in summaries if s["run"] == summary["run"]) > 1
  if not twins or summary.get("recorded"):
    return f"{summary['run']}.png"
  kind = "".join(c if c.isalnum() else "-" for c in machine_kind(summary).lower())
  return f"{summary['run']}-{'-'.join(p for p in kind.split('-') if p)}.png"


def write_page(root: str, rows: list[dict], summaries: list[dict], iterations: int,
               protocol: dict, command: str, train_lines: Sequence[str],
               missing: Sequence[str] = ()) -> str:
  """Writes <root>/ablation.md and .json and each row's first grid under <root>/ablation/.
  missing: the planned runs not trained yet (named on the page: the study is partial).
  Summaries marked `recorded` (load_recorded) are named on the page as such."""
  grid_dir = os.path.join(root, "ablation")
  os.makedirs(grid_dir, exist_ok=True)
  first_runs = {}
  for s in summaries:
    first_runs.setdefault(s["row"], s)
  for s in first_runs.values():
    target = os.path.join(grid_dir, grid_file(s, summaries))
    if s.get("grid") and os.path.abspath(s["grid"]) != os.path.abspath(target):
      shutil.copyfile(s["grid"], target)
  columns = _with_deltas(COLUMNS)
  floors = {key: min((s[key] for s in summaries if s.get(key)), default=None)
            for key in ("classifier_floor", "inception_floor")}
  shown = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
  inception = (f"; FID-Inception-V3 features at N = {protocol['inception']:,} (KID on the same "
               f"features; floor {shown(floors['inception_floor'])})"
               if protocol.get("inception") else "")
  lines = [
      f"# The IGAN recipe, one change at a time ({iterations:,} iterations per run)", "",
      "Generated by `python -m igan_jax.ablation` (the command below) from the runs' own "
      "workdirs. Each row changes one value of the default recipe (`igan`) and keeps the rest; "
      "mean ± sd over training seeds; each run's checkpoint "
      f"{iterations:,} evaluated with latent seed 0, classifier features at N = "
      f"{protocol['classifier']:,} generated vs {protocol['classifier']:,} test images "
      f"(real-vs-real floor {shown(floors['classifier_floor'])}){inception}. Δ vs default: the "
      "row's mean FID minus the default recipe's on the same kind of machine (positive: the "
      "change makes it worse, so the default's value earns its place); read it against the "
      "default's own sd over seeds. The same seed on another kind of CPU is another run: runs "
      "on several kinds are one line per kind.", "",
      markdown_table(rows, columns, first="row"), ""]
  recorded = [s["run"] for s in summaries if s.get("recorded")]
  if recorded:
    lines += [f"Recorded by an earlier table (`--recorded`; their workdirs are not here, each "
              f"run's machine is in its line below): {', '.join(recorded)}.", ""]
  if missing:
    lines += [f"**Partial**: {len(missing)} planned run(s) not trained yet, so not in the "
              f"table: {', '.join(missing)}. The same command trains them and rewrites this "
              "page.", ""]
  lines += [
      "Spike ratio: max / median of the logged d_loss past the first 10 % of the run; period-2 "
      "/ period-4 power: the share of the last grid's spectral power at those periods (real "
      "Fashion-MNIST 0.004 / 0.025); brightness: the last grid's mean (real 0.29); training "
      "minutes: the log's Σ iterations / speed.", "",
      "## Every run", "", runs_table(summaries, COLUMNS), "",
      "## First seed's last grid per row", ""]
  for s in first_runs.values():
    lines += [f"**{s['run']}**: {describe(s['row'])}  ",
              f"![{s['run']}](ablation/{grid_file(s, summaries)})", ""]
  lines += commands_section(command, train_lines)
  return save_page(root, "ablation", lines, dict(iterations=iterations, protocol=protocol,
                                                  rows=rows, runs=summaries,
                                                  missing=list(missing)))


def copy_to_docs(root: str, docs: str, name: str = DOCS_NAME) -> str:
  """DIR/<name>.md with its grids under DIR/<name>/, and the numbers behind it as DIR/<name>.json
  (what `--recorded` reads back; workdirs as paths relative to the current directory where they
  lie under it, grids as the docs' copies; one run per line, so a new run is a one-line diff)."""
  img_dir = os.path.join(docs, name)
  os.makedirs(img_dir, exist_ok=True)
  for grid in os.listdir(os.path.join(root, "ablation")):
    shutil.copyfile(os.path.join(root, "ablation", grid), os.path.join(img_dir, grid))
  with open(os.path.join(root, "ablation.md")) as f:
    text = f.read().replace("](ablation/", f"]({name}/")
  target = os.path.join(docs, f"{name}.md")
  with open(target, "w") as f:
    f.write(text)
  with open(os.path.join(root, "ablation.json")) as f:
    data = json.load(f)
  here = os.getcwd()
  for run in data["runs"]:
    for key in ("workdir", "evaluation"):
      path = run.get(key)
      if path and os.path.isabs(path) and os.path.commonpath([here, path]) == here:
        run[key] = os.path.relpath(path, here)
    grid = os.path.join(img_dir, grid_file(run, data["runs"]))
    run["grid"] = os.path.relpath(grid, here) if os.path.exists(grid) else None
  with open(os.path.join(docs, f"{name}.json"), "w") as f:
    f.write(_json_one_run_per_line(data))
  return target


def _json_one_run_per_line(data: dict) -> str:
  """JSON of `data` with each element of its lists of records on one line."""
  dump = lambda v: json.dumps(v, default=list, ensure_ascii=False)  # noqa: E731
  parts = []
  for key, value in data.items():
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
      inner = ",\n".join("    " + dump(v) for v in value)
      parts.append(f"  {dump(key)}: [\n{inner}\n  ]")
    else:
      parts.append(f"  {dump(key)}: {dump(value)}")
  return "{\n" + ",\n".join(parts) + "\n}\n"


def _seeds(text: str, flag: str) -> tuple[int, ...]:
  try:
    seeds = tuple(int(v) for v in text.split(",") if v)
  except ValueError:
    raise ReproduceError(f"{flag}={text!r}: expected comma-separated integers") from None
  if not seeds:
    raise ReproduceError(f"{flag} is empty: give at least one seed")
  return seeds


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m igan_jax.ablation",
                              description=__doc__.split("\n")[0])
  p.add_argument("--root", default="runs/ablation", help="where the runs' workdirs go")
  p.add_argument("--rows", default=",".join(ROWS),
                 help="rows, comma-separated: " + ", ".join(ROWS) + "; a row a+b sets both "
                 "rows' values at once and trains from --baseline_seeds")
  p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), help="each change's seeds")
  p.add_argument("--baseline_seeds", default=",".join(map(str, BASELINE_SEEDS)),
                 help="the default recipe's seeds")
  p.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, help="every run's length")
  p.add_argument("--num_samples", type=int, default=10_000, help="classifier N")
  p.add_argument("--inception_samples", type=int, default=2_000,
                 help="Inception N (0 = no Inception)")
  p.add_argument("--experiment", default=EXPERIMENT, help="the experiment file")
  p.add_argument("--train_flag", action="append", default=[],
                 help="one more flag for every training command (repeatable)")
  p.add_argument("--stage", choices=("all", "train", "table"), default="all",
                 help="train: runs only; table: evaluate and tabulate the runs that are trained")
  p.add_argument("--docs", default="", help="also write DIR/ablation_table.md and its grids")
  p.add_argument("--docs_name", default=DOCS_NAME,
                 help="the table's name under --docs: DIR/NAME.md, DIR/NAME.json, DIR/NAME/")
  p.add_argument("--recorded", default="",
                 help="an earlier table's JSON (<root>/ablation.json or DIR/ablation_table.json):"
                 " a planned run not trained under --root but recorded there (same row, seed, "
                 "flags and length) enters the table from the record")
  p.add_argument("--dry_run", action="store_true", help="print what would run, run nothing")
  args = p.parse_args(argv)
  try:
    rows = [r for r in args.rows.split(",") if r]
    for row in rows:
      row_overrides(row)  # an unknown row fails here, before any training
    if args.iterations < 10:
      raise ReproduceError(f"--iterations must be ≥ 10, got {args.iterations}")
    find_experiment(args.experiment)
    runs = plan(args.root, rows, _seeds(args.seeds, "--seeds"),
                _seeds(args.baseline_seeds, "--baseline_seeds"))
    recipes = {row: row_recipe(row, args.experiment, args.train_flag) for row in rows}
    check_trained_recipes(runs, {run.name: recipes[run.row] for run in runs})
    eval_every = max(1, args.iterations // 4)
    _log(f"{len(runs)} runs of {args.iterations:,} iterations under {os.path.abspath(args.root)}")
    if args.stage in ("all", "train"):
      train_stage(runs, args.iterations, eval_every, extra=args.train_flag,
                  experiment=args.experiment, dry_run=args.dry_run, log=_log)
    if args.stage == "train" or args.dry_run:
      return 0
    protocol = eval_protocol(args.num_samples, args.inception_samples)
    recorded = load_recorded(args.recorded) if args.recorded else {}
    done = [run for run in runs if trained(run.workdir, args.iterations)]
    local = {run.name: summarise(run, args.iterations,
                                 evaluate(run, args.iterations, protocol, log=_log))
             for run in done}
    # A recorded run enters unless this very run (same name, same kind of machine) is trained
    # here: the same seed on another kind of machine is another run, so both count.
    kept = {}
    for run in runs:
      own = machine_kind(local[run.name]) if run.name in local else None
      found = [s for s in recorded_summaries(run, args.iterations, protocol, recorded, args.docs,
                                                args.docs_name, recipes[run.row])
               if machine_kind(s) != own]
      if found:
        kept[run.name] = found
    if not local and not kept:
      trained_runs(runs, args.iterations, args.root)  # none at all: says what to do
    summaries = [s for run in runs
                 for s in ([local[run.name]] if run.name in local else []) + kept.get(run.name, [])]
    if kept:
      _log(f"{sum(map(len, kept.values()))} run(s) from {args.recorded}: {', '.join(kept)}")
    table_rows = aggregate_by_machine(summaries, labels={row: describe(row) for row in rows})
    add_deltas(table_rows)
    command = "python -m igan_jax.ablation " + " ".join(
        [f"--root={args.root}", f"--rows={args.rows}", f"--seeds={args.seeds}",
         f"--baseline_seeds={args.baseline_seeds}", f"--iterations={args.iterations}"]
        + [f"--train_flag={f}" for f in args.train_flag])
    train_lines = page_train_commands(summaries, args.root, args.iterations, eval_every,
                                      args.train_flag, args.experiment)
    missing = [r.name for r in runs if r.name not in local and r.name not in kept]
    page = write_page(os.path.abspath(args.root), table_rows, summaries, args.iterations,
                      protocol, command, train_lines, missing)
    _log(f"wrote {page}")
    if args.docs:
      _log(f"wrote {copy_to_docs(os.path.abspath(args.root), args.docs, args.docs_name)}")
    columns = _with_deltas(COLUMNS[:5])
    print(markdown_table(table_rows, columns, first="row"), flush=True)
    if missing:
      _log(f"not trained yet (not in the table): {', '.join(missing)}")
  except ReproduceError as e:
    print(f"igan_jax.ablation: error: {e}", file=sys.stderr)
    return 2
  return 0


def _log(message: str) -> None:
  print(f"[igan_jax] ablation: {message}", flush=True)


if __name__ == "__main__":
  sys.exit(main())
