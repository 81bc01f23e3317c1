"""The Fashion-MNIST reproduction table: one command trains, evaluates and tabulates every run.

    python -m igan_jax.reproduce --root=runs/reproduction            # the whole table
    python -m igan_jax.reproduce --root=runs/reproduction --dry_run  # what it would do
    make reproduce                                                    # the same, via make

Rows (`--rows`, default igan, dcgan, wgan_gp): each model trained with its own recipe
(`experiments/fashion_mnist.py:<variant>`) for the same number of iterations B (`--iterations`,
default 3,000) from several training seeds (`--seeds`, default IGAN 0, 1, 2 and each baseline
0, 1). One run = one workdir `<root>/<variant>_seed<k>`, trained by the project's own command
(`python -m igan_jax.main ...`, a subprocess per run, printed before it starts), with FID during
training every B / 10 iterations (classifier, N = 2,000: the curves).

Every stage skips what is done and resumes what was stopped, so the same command picks up
wherever an earlier call was killed, on this machine or another:
  1. train: skipped when `<workdir>/checkpoints/<B>` exists; otherwise the training command,
     which resumes from the run's latest checkpoint;
  2. evaluate: checkpoint B with `evaluation.workdir.evaluate_workdir` (latent seed 0; the
     classifier at N = `--num_samples` = 10,000 vs 10,000 test images, the FID Inception at N =
     `--inception_samples`, each with its real-vs-real floor at that N), written to
     `<workdir>/eval/<B>.json`; skipped when a record of step B with the same protocol exists;
  3. table: the run report's log and grid numbers (igan_jax.report: spike ratio, period-2 power,
     brightness, training seconds) and the evaluation's numbers per run, mean ± sd over seeds per
     model, written to `<root>/reproduction.json` and `<root>/reproduction.md`
     (reproduction_page.py), with the last grid of every run and all FID-during-training curves
     in one figure (both in `<root>/reproduction/`, beside the page).
`--docs=DIR` also copies the page, figure and grids to DIR/reproduction.md, DIR/reproduction/.

A workdir under --root that holds a run of another recipe than its variant trains today (the
model, loss and optimiser values of its config.json, recipe_of; the experiment file's default
changed since it trained) is refused before anything runs (check_trained_recipes): skipping it
as trained would put the old recipe's numbers in the new recipe's row. Give the table a new root.

The machine each run trained on is recorded per training call in `<workdir>/machines.jsonl`
(CPU family, cores, JAX backend, steps and seconds): compare wall-clock only between runs of
one machine kind.

The Inception network runs a few images per second on 2 CPU cores (docs/speed.md), hence the
default N = 2,000 there (minutes per run, plus the two real references once, cached); on a GPU
pass `--inception_samples=10000`, the paper's protocol.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import glob
import json
import os
import subprocess
import sys
import time
from typing import Any, Sequence

from igan_jax import config as config_lib, plots, report
from igan_jax.errors import UserError
from igan_jax.reproduction_page import aggregate, copy_to_docs, markdown_table, write_page

EXPERIMENT = "experiments/fashion_mnist.py"
PACKAGE = os.path.dirname(os.path.abspath(__file__))
REPOSITORY = os.path.dirname(PACKAGE)  # the clone, when the package runs from one
DEFAULT_ITERATIONS = 3_000
DEFAULT_SEEDS = {"igan": (0, 1, 2), "dcgan": (0, 1), "wgan_gp": (0, 1), "igan_v2": (0,),
                 "igan_paper": (0, 1)}


class ReproduceError(UserError, RuntimeError):
  """A stage cannot go on; str(e) says what to do."""


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of a table: a variant of the experiment file, a training seed, a workdir,
  and (for a table of changes, igan_jax/ablation.py) a row name and the config flags it adds."""
  variant: str
  seed: int
  workdir: str
  row: str = ""
  overrides: tuple[str, ...] = ()

  @property
  def name(self) -> str:
    return f"{self.row or self.variant}_seed{self.seed}"


def plan(root: str, variants: Sequence[str], seeds: dict[str, Sequence[int]]) -> list[Run]:
  """The runs of the table, in the order they train (every model's first seed first, so a
  table stopped early already compares all models)."""
  root = os.path.abspath(os.path.expanduser(root))
  per_model = [[Run(v, s, os.path.join(root, f"{v}_seed{s}")) for s in seeds[v]]
               for v in variants]
  depth = max((len(r) for r in per_model), default=0)
  return [runs[i] for i in range(depth) for runs in per_model if i < len(runs)]


def train_command(run: Run, iterations: int, eval_every: int, python: str = sys.executable,
                  extra: Sequence[str] = (), experiment: str = EXPERIMENT) -> list[str]:
  """The project's own training command for `run` (resumes when its workdir has checkpoints):
  the run's own flags (`run.overrides`), then `extra`, the flags of every run of the table."""
  return [python, "-m", "igan_jax.main", f"--config={experiment}:{run.variant}",
          f"--workdir={run.workdir}", f"--config.num_iterations={iterations}",
          f"--config.seed={run.seed}", f"--config.eval_every={eval_every}", *run.overrides,
          *extra]


def find_experiment(experiment: str) -> str:
  """The experiment file's absolute path: as given (relative to the current directory), else
  relative to the repository this package runs from; a ReproduceError when neither exists (an
  installed package has no experiments/ beside it)."""
  candidates = [os.path.abspath(experiment)]
  if not os.path.isabs(experiment):
    candidates.append(os.path.join(REPOSITORY, experiment))
  for path in candidates:
    if os.path.isfile(path):
      return path
  raise ReproduceError(f"no experiment file {experiment!r} (looked in {os.getcwd()} and "
                       f"{REPOSITORY}): run from a clone of the repository, or pass "
                       "--experiment=PATH/TO/experiments/fashion_mnist.py")


# The parts of a config that decide what a run learns. A recorded run stands for a planned run
# only when these agree: its flags alone do not say what it trained, since they are relative to
# the default recipe of the day it trained, and a study's outcome can change that default.
RECIPE_SECTIONS = ("model", "loss", "optim")
RECIPE_KEYS = ("n_critic", "batch_size", "ema_decay")


def recipe_of(config: dict) -> dict[str, Any]:
  """The recipe of a config (a dict, e.g. `ConfigDict.to_dict()` or a workdir's config.json),
  flattened: {"model.dropout": 0.0, "n_critic": 1, ...}, tuples as lists (as JSON has them)."""
  out: dict[str, Any] = {}

  def walk(prefix, node):
    for key, value in node.items():
      if isinstance(value, dict):
        walk(f"{prefix}{key}.", value)
      else:
        out[prefix + key] = list(value) if isinstance(value, (list, tuple)) else value

  walk("", {k: config[k] for k in RECIPE_SECTIONS + RECIPE_KEYS if k in config})
  return out


def planned_recipe(experiment: str, variant: str, values: dict[str, Any] | None = None,
                   train_flags: Sequence[str] = ()) -> dict[str, Any]:
  """The recipe a run trains with today: the experiment file's `variant`, then `values` (a
  table row's config values), then the table's `--train_flag=--config.KEY=VALUE` flags."""
  cfg = config_lib.load_config(find_experiment(experiment), variant, check=False)
  config_lib.apply_overrides(cfg, values or {})
  recipe = recipe_of(cfg.to_dict())
  for flag in train_flags:
    key, sep, text = flag.removeprefix("--config.").partition("=")
    if flag.startswith("--config.") and sep and key in recipe:
      recipe[key] = _parse_like(text, recipe[key])
  return recipe


def _parse_like(text: str, like: Any) -> Any:
  """A flag's text as a value of the type of `like` (as the training command parses it)."""
  try:
    if isinstance(like, bool):
      return {"true": True, "false": False}.get(text.lower(), text)
    if isinstance(like, (int, float)) and not isinstance(like, bool):
      number = float(text)
      return int(number) if isinstance(like, int) and number.is_integer() else number
    if isinstance(like, list):
      return list(ast.literal_eval(text))
  except (ValueError, SyntaxError, TypeError):
    pass
  return text


def trained_recipe(workdir: str) -> dict[str, Any] | None:
  """The recipe a workdir's run trained with (its config.json as report.load_run_config reads
  it: keys added since take base_config()'s values), None where it has none or cannot be read."""
  try:
    return recipe_of(report.load_run_config(workdir).to_dict())
  except (OSError, ValueError, UserError):
    return None


def recipe_differences(recipe: dict[str, Any] | None, planned: dict[str, Any]) -> list[str]:
  """The keys where a run's recipe differs from the planned one, as "key: theirs vs planned".
  A key the run's recipe lacks (added to the package after it trained) takes base_config()'s
  value, the behaviour of the code before the key existed (config.from_saved). None: unknown
  (a record written before recipes were recorded), which matches nothing."""
  if recipe is None:
    return ["no recipe recorded"]
  base = recipe_of(config_lib.base_config().to_dict())
  return [f"{k}: {recipe.get(k, base.get(k))!r} vs {v!r}" for k, v in planned.items()
          if recipe.get(k, base.get(k)) != v]


def check_trained_recipes(runs: Sequence[Run], recipes: dict[str, dict]) -> None:
  """Refuses a planned run whose workdir holds a run of another recipe than recipes[run.name]
  (ReproduceError naming the keys): after a default recipe changed, a workdir of the old default
  must not be skipped as trained, resumed or tabulated as the new one."""
  for run in runs:
    if not os.path.exists(os.path.join(run.workdir, "config.json")):
      continue
    diffs = recipe_differences(trained_recipe(run.workdir), recipes[run.name])
    if diffs:
      raise ReproduceError(
          f"{run.workdir} holds a run of another recipe than {run.name} trains today "
          f"({'; '.join(diffs)}): the default recipe has changed since it trained. Give the "
          "table a new --root (and keep the old one)")


def trained(workdir: str, iterations: int) -> bool:
  """Whether the run holds a committed checkpoint of step `iterations` (orbax writes a step to a
  temporary directory and renames it to the bare number only when complete)."""
  return os.path.isdir(os.path.join(workdir, "checkpoints", str(iterations)))


def train(run: Run, iterations: int, eval_every: int, extra: Sequence[str] = (),
          log=print, experiment: str = EXPERIMENT) -> float:
  """Trains (or resumes) `run` to `iterations`; appends the machine to machines.jsonl; returns
  the seconds the command took."""
  path = find_experiment(experiment)
  log("$ " + " ".join(train_command(run, iterations, eval_every, python="python", extra=extra,
                                    experiment=experiment)))
  cmd = train_command(run, iterations, eval_every, extra=extra, experiment=path)
  os.makedirs(run.workdir, exist_ok=True)
  start_step = _latest_step(run.workdir)
  t0 = time.time()
  env = dict(os.environ)
  # The subprocess imports this same igan_jax, wherever the current directory is.
  env["PYTHONPATH"] = os.pathsep.join(
      p for p in (os.path.dirname(PACKAGE), env.get("PYTHONPATH")) if p)
  with open(os.path.join(run.workdir, "train.log"), "a") as out:
    proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
  seconds = time.time() - t0
  with open(os.path.join(run.workdir, "machines.jsonl"), "a") as f:
    f.write(json.dumps(dict(machine=report.machine(), from_step=start_step,
                            to_step=_latest_step(run.workdir), seconds=round(seconds, 1),
                            returncode=proc.returncode,
                            time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))) + "\n")
  if proc.returncode != 0 or not trained(run.workdir, iterations):
    raise ReproduceError(
        f"training {run.name} stopped (exit code {proc.returncode}); its output is in "
        f"{run.workdir}/train.log. Fix the cause and rerun the same command: it resumes")
  return seconds


def train_stage(runs: Sequence[Run], iterations: int, eval_every: int, *,
                extra: Sequence[str] = (), experiment: str = EXPERIMENT, dry_run: bool = False,
                log=print):
  """Trains every run not yet trained to `iterations`, in order (dry_run: says what it would
  run)."""
  for run in runs:
    if trained(run.workdir, iterations):
      log(f"{run.name}: trained to {iterations:,}, skipped")
    elif dry_run:
      log("would run: " + " ".join(train_command(run, iterations, eval_every, python="python",
                                                 extra=extra, experiment=experiment)))
    else:
      train(run, iterations, eval_every, extra=extra, log=log, experiment=experiment)


def trained_runs(runs: Sequence[Run], iterations: int, root: str) -> list[Run]:
  """The runs trained to `iterations`; a ReproduceError when there is none."""
  done = [r for r in runs if trained(r.workdir, iterations)]
  if not done:
    raise ReproduceError(f"no run under {root} is trained to {iterations:,}; run with "
                         "--stage=all (or train) first")
  return done


def _latest_step(workdir: str) -> int | None:
  steps = [int(os.path.basename(p)) for p in glob.glob(os.path.join(workdir, "checkpoints", "*"))
           if os.path.basename(p).isdigit()]
  return max(steps) if steps else None


def eval_protocol(num_samples: int, inception_samples: int) -> dict:
  """What an evaluation of the table must have measured to be reused."""
  return dict(classifier=num_samples, inception=inception_samples)


def find_evaluation(workdir: str, step: int, protocol: dict) -> dict | None:
  """A record `<workdir>/eval/<step>[.k].json` that measured every backbone of `protocol` at its
  N with latent seed 0 (newest first), or None."""
  paths = sorted(glob.glob(os.path.join(workdir, "eval", f"{step}.json")) +
                 glob.glob(os.path.join(workdir, "eval", f"{step}.*.json")),
                 key=os.path.getmtime, reverse=True)
  for path in paths:
    try:
      with open(path) as f:
        record = json.load(f)
    except (OSError, ValueError):
      continue
    if record.get("step") != step or record["protocol"].get("seeds") != [0]:
      continue
    backbones = record.get("backbones", {})
    if all(name in backbones and backbones[name]["protocol"]["n"] == n
           for name, n in protocol.items() if n > 0):
      return record
  return None


def evaluate(run: Run, step: int, protocol: dict, log=print) -> dict:
  """Evaluates checkpoint `step` of `run` unless an evaluation with `protocol` exists."""
  record = find_evaluation(run.workdir, step, protocol)
  if record is not None:
    log(f"{run.name}: evaluation of step {step} exists, reused")
    return record
  from igan_jax.evaluation.workdir import evaluate_workdir  # late: loads JAX (~3 s)
  config = report.load_run_config(run.workdir)
  backbones = tuple(name for name, n in protocol.items() if n > 0)
  what = ", ".join(f"{b} N={protocol[b]}" for b in backbones)
  log(f"{run.name}: evaluating step {step} ({what})")
  record = evaluate_workdir(
      config, run.workdir, step=step, num_samples=protocol["classifier"], seeds=(0,),
      backbones=backbones, inception_samples=protocol.get("inception", 0), verbose=False)
  missing = [b for b in backbones if b not in record["backbones"]]
  if missing:
    raise ReproduceError(f"{run.name}: backbone(s) {missing} could not run: "
                         f"{record['skipped']}" + ("; --inception_samples=0 leaves Inception out"
                                                   if "inception" in missing else ""))
  return record


def summarise(run: Run, step: int, record: dict) -> dict[str, Any]:
  """One run's numbers: the report's log and grid numbers and the evaluation's."""
  # The run report's log and grid parts (its sample part is the evaluation's, above).
  rep = report.run_report(run.workdir, step, num_samples=0)
  log_summary, grid = rep["log"], rep["grid"]
  out: dict[str, Any] = dict(run=run.name, variant=run.variant, row=run.row or run.variant,
                             overrides=list(run.overrides), seed=run.seed, step=step,
                             workdir=run.workdir, grid=grid["path"],
                             spike_ratio=log_summary["spike_ratio"],
                             period2_power=grid["period2_power"],
                             period4_power=grid["period4_power"], brightness=grid["brightness"],
                             train_minutes=log_summary["train_seconds_from_log"] / 60,
                             rollbacks=log_summary["rollbacks"],
                             evaluation=record.get("path"))
  backbones = record["backbones"]
  if "classifier" in backbones:
    b = backbones["classifier"]
    out.update(classifier_fid=b["mean"]["fid"], classifier_floor=b["floor"]["fid"],
               classifier_n=b["protocol"]["n"], precision=b["mean"]["precision"],
               recall=b["mean"]["recall"])
    cm = record["class_metrics"]["mean"]
    out.update(class_entropy=cm["entropy"], mean_confidence=cm["mean_confidence"])
  if "inception" in backbones:
    b = backbones["inception"]
    out.update(inception_fid=b["mean"]["fid"], inception_floor=b["floor"]["fid"],
               inception_kid=1e3 * b["mean"]["kid"], inception_kid_floor=1e3 * b["floor"]["kid"],
               inception_n=b["protocol"]["n"])
  out["recipe"] = trained_recipe(run.workdir)
  out["machines"] = _machines(run.workdir)
  out["fid_curve"] = [(s, v) for s, v in _fid_curve(run.workdir) if s <= step]
  return out


def _machines(workdir: str) -> list[str]:
  """The distinct machine kinds the run trained on ("AMD EPYC, family 25, 2 cores")."""
  kinds = []
  try:
    with open(os.path.join(workdir, "machines.jsonl")) as f:
      for line in f:
        try:
          m = json.loads(line)["machine"]
        except (ValueError, KeyError):
          continue
        kind = (f"{m.get('model_name', m.get('processor', '?'))}, family "
                f"{m.get('cpu_family', '?')}, {m.get('cores', '?')} cores")
        if kind not in kinds:
          kinds.append(kind)
  except OSError:
    pass
  return kinds


def _fid_curve(workdir: str) -> list[tuple[int, float]]:
  series = plots.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  keys = [k for k in series if k.startswith("fid_") and not k.endswith("_floor")
          and not k.endswith("_ema")]
  return sorted(series[keys[0]]) if keys else []


def page_train_commands(summaries: Sequence[dict], root_label: str, iterations: int,
                        eval_every: int, train_flags: Sequence[str] = (),
                        experiment: str = EXPERIMENT) -> list[str]:
  """Each run's training command as the page shows it."""
  # Workdirs as the user named the root (runs/reproduction/igan_seed0), not this machine's path.
  lines = []
  for s in summaries:
    run = Run(s["variant"], s["seed"], os.path.join(root_label, s["run"]),
              row=s.get("row", ""), overrides=tuple(s.get("overrides", ())))
    lines.append(" ".join(train_command(run, iterations, eval_every, python="python",
                                        extra=train_flags, experiment=experiment)))
  return lines


def parse_seeds(specs: Sequence[str], variants: Sequence[str]) -> dict[str, tuple[int, ...]]:
  """`["igan=0,1,2", "dcgan=0"]` over DEFAULT_SEEDS (a variant not named: its default, else 0)."""
  seeds = {v: DEFAULT_SEEDS.get(v, (0,)) for v in variants}
  for spec in specs:
    name, _, values = spec.partition("=")
    if name not in seeds or not values:
      raise ReproduceError(f"--seeds {spec!r}: expected <variant>=<seed>[,<seed>...] with a "
                           f"variant of --rows ({', '.join(variants)})")
    try:
      seeds[name] = tuple(int(v) for v in values.split(","))
    except ValueError:
      raise ReproduceError(f"--seeds {spec!r}: seeds must be integers") from None
  return seeds


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m igan_jax.reproduce",
                              description=__doc__.split("\n")[0])
  p.add_argument("--root", default="runs/reproduction", help="where the runs' workdirs go")
  p.add_argument("--rows", default="igan,dcgan,wgan_gp",
                 help="variants of the experiment file, comma-separated")
  p.add_argument("--experiment", default=EXPERIMENT,
                 help="the experiment file (relative paths: to the current directory, else to "
                      "the repository)")
  p.add_argument("--seeds", action="append", default=[],
                 help="per variant, e.g. --seeds=igan=0,1,2 (repeatable)")
  p.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, help="B, every run's length")
  p.add_argument("--num_samples", type=int, default=10_000, help="classifier N")
  p.add_argument("--inception_samples", type=int, default=2_000,
                 help="Inception N (0 = no Inception); 10000 is the paper's protocol")
  p.add_argument("--eval_every", type=int, default=0,
                 help="FID during training every this many iterations (0 = iterations / 10)")
  p.add_argument("--train_flag", action="append", default=[],
                 help="one more flag for every training command, e.g. "
                      "--train_flag=--config.model.dtype=bfloat16 (repeatable)")
  p.add_argument("--stage", choices=("all", "train", "table"), default="all",
                 help="train: runs only; table: evaluate and tabulate the runs that are trained")
  p.add_argument("--docs", default="", help="also write DIR/reproduction.md and its images")
  p.add_argument("--dry_run", action="store_true", help="print what would run, run nothing")
  args = p.parse_args(argv)
  variants = [v for v in args.rows.split(",") if v]
  try:
    for v in variants:
      if v not in config_lib.VARIANTS:
        raise ReproduceError(f"--rows: unknown variant {v!r}; one of {config_lib.VARIANTS}")
    if args.iterations < 10:
      raise ReproduceError(f"--iterations must be ≥ 10, got {args.iterations}")
    find_experiment(args.experiment)
    runs = plan(args.root, variants, parse_seeds(args.seeds, variants))
    recipes = {v: planned_recipe(args.experiment, v, train_flags=args.train_flag)
               for v in variants}
    check_trained_recipes(runs, {run.name: recipes[run.variant] for run in runs})
    protocol = eval_protocol(args.num_samples, args.inception_samples)
    eval_every = args.eval_every or max(1, args.iterations // 10)
    _log(f"{len(runs)} runs of {args.iterations:,} iterations under {os.path.abspath(args.root)}")
    if args.stage in ("all", "train"):
      train_stage(runs, args.iterations, eval_every, extra=args.train_flag,
                  experiment=args.experiment, dry_run=args.dry_run, log=_log)
    if args.stage == "train" or args.dry_run:
      return 0
    done = trained_runs(runs, args.iterations, args.root)
    summaries = []
    for run in done:
      record = evaluate(run, args.iterations, protocol, log=_log)
      summaries.append(summarise(run, args.iterations, record))
    rows = aggregate(summaries)
    commands = [f"--{k}={getattr(args, k)}" for k in ("root", "rows", "iterations",
                                                        "inception_samples")]
    if args.experiment != EXPERIMENT:
      commands.append(f"--experiment={args.experiment}")
    commands += [f"--seeds={s}" for s in args.seeds]
    commands += [f"--train_flag={f}" for f in args.train_flag]
    train_lines = page_train_commands(summaries, args.root or os.path.abspath(args.root),
                                      args.iterations, eval_every, args.train_flag,
                                      args.experiment)
    page = write_page(os.path.abspath(args.root), rows, summaries, args.iterations, protocol,
                      commands, train_lines)
    _log(f"wrote {page}")
    if args.docs:
      _log(f"wrote {copy_to_docs(os.path.abspath(args.root), summaries, args.docs)}")
    print(markdown_table(rows), flush=True)
    missing = [r.name for r in runs if r not in done]
    if missing:
      _log(f"not trained yet (not in the table): {', '.join(missing)}")
  except ReproduceError as e:
    print(f"igan_jax.reproduce: error: {e}", file=sys.stderr)
    return 2
  return 0


def _log(msg: str):
  print(f"[igan_jax] reproduce: {msg}", flush=True)


if __name__ == "__main__":
  sys.exit(main())
