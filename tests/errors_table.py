"""Every bad input we promise a clear answer to (issue 5), as one table.

Each row is a test (tests/test_errors.py runs it through the real command line) and a row of
docs/errors.md, which this module writes:

    python -m tests.errors_table            # runs tests/test_errors.py, records each message
    python -m tests.errors_table --only ID  # runs only these cases (comma-separated ids)
    python -m tests.errors_table --no-run   # re-renders, keeping the recorded messages

A row: what the user did, the command, the exit status, substrings of the one line that
answers (the last line of stderr, or a line of stdout for a run that recovers and goes on), and
what happens to the workdir. `setup` names how tests/test_errors.py prepares the case; in
commands and messages {workdir} and {tmp} stand for the case's workdir and temporary directory,
and {tiny} for the small-model flags the tests train with (TINY in tests/helpers.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "errors.md")
FM = "--config=experiments/fashion_mnist.py"
WD = "--workdir={workdir}"


@dataclasses.dataclass(frozen=True)
class Case:
  id: str
  did: str                    # what the user did, in words
  args: tuple[str, ...]       # after `python -m igan_jax.main`
  exit: int
  message: tuple[str, ...]    # substrings of the answering line
  workdir: str                # what happens to the workdir, in words
  setup: str = "existing"     # how tests/test_errors.py prepares it (its SETUPS)
  stream: str = "stderr"      # stderr: its last line; stdout: the first line with message[0]
  mock: bool = False          # run on TFDS mock data (no dataset files needed)
  slow: bool = False          # trains: marked slow


UNCHANGED = "unchanged (every file's size and mtime)"
CASES = [
    # The config, checked before JAX starts or right after: no file is opened in the workdir.
    Case("unknown_key", "misspelt a config key", (FM, WD, "--config.no_such_key=1"), 2,
         ("unknown config key 'no_such_key'", "base_config()"), UNCHANGED),
    Case("wrong_type", "gave a value of the wrong type", (FM, WD, "--config.batch_size=abc"), 2,
         ("--config.batch_size=abc", "invalid literal for int()"), UNCHANGED),
    Case("batch_size_0", "set batch_size ≤ 0", (FM, WD, "--config.batch_size=0"), 2,
         ("config.batch_size: must be ≥ 1, got 0",), UNCHANGED),
    Case("n_critic_0", "set n_critic ≤ 0", (FM, WD, "--config.n_critic=0"), 2,
         ("config.n_critic: must be ≥ 1, got 0",), UNCHANGED),
    Case("resolution", "asked for a resolution the models do not support",
         (FM, WD, "--config.data.resolution=64"), 2,
         ("config.data.resolution: must be one of", "got 64"), UNCHANGED),
    Case("lr_0", "set the learning rate ≤ 0", (FM, WD, "--config.optim.d_init_lr=0"), 2,
         ("config.optim.d_init_lr: must be > 0",), UNCHANGED),
    Case("unknown_dataset", "named a dataset we do not have",
         (FM, WD, "--config.data.name=cifar10"), 2, ("unknown dataset 'cifar10'", "supported:"),
         UNCHANGED),
    Case("unknown_model", "named a model we do not have", (FM, WD, "--config.model.name=stylegan"),
         2, ("unknown model 'stylegan'", "choose one of"), UNCHANGED),
    Case("unknown_variant", "named an unknown recipe after ':'",
         ("--config=experiments/fashion_mnist.py:stylegan", WD), 2,
         ("unknown variant 'stylegan'", "available: igan"), UNCHANGED),
    Case("config_missing", "passed a config file that does not exist",
         ("--config=experiments/nope.py", WD), 2,
         ("config file 'experiments/nope.py' does not exist",), "not created", setup="fresh"),
    Case("config_syntax", "passed a config file with a syntax error",
         ("--config={tmp}/broken.py", WD), 2,
         ("config file {tmp}/broken.py has a syntax error at line 2",), "not created",
         setup="broken_config"),
    Case("no_workdir", "left out --workdir", (FM,), 2,
         ("--workdir is required",), "none given", setup="fresh"),
    # The workdir, checked before JAX starts.
    Case("workdir_is_file", "pointed --workdir at a file", (FM, WD), 2,
         ("is a file, not a directory",), "the file is unchanged", setup="file"),
    Case("workdir_not_writable", "pointed --workdir where they cannot write (here under /sys, "
         "which even root cannot write)", (FM, WD), 2,
         ("is not writable", "creating a directory in /sys", "pass a directory you can write to"),
         "not created", setup="unwritable"),
    # Devices and processes (README "Many devices and many hosts").
    Case("too_many_devices", "asked for more devices than the machine has",
         (FM, WD, "--config.num_devices=64"), 2,
         ("config.num_devices: 64 devices asked for", "--config.num_devices=0 (all)"),
         "not created", setup="fresh"),
    Case("process_id_out_of_range", "gave a process number outside 0..num_processes-1",
         (FM, WD, "--coordinator_address=localhost:1234", "--num_processes=2",
          "--process_id=2"), 2,
         ("--process_id=2 is out of range for --num_processes=2",), UNCHANGED),
    # The data.
    Case("mnist_offline", "trained on MNIST offline before fetching its files",
         ("--config=experiments/mnist.py", WD, "--config.num_iterations=0"), 2,
         ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
          "{tmp}/tfds/downloads/manual"),
         "not created", setup="offline"),
    # The checkpoints in an existing workdir.
    Case("other_model", "resumed a workdir with a different model setup",
         (FM, WD, "{tiny}", "--config.model.channels=16"), 2,
         ("model.channels: 8 in the workdir vs 16 now", "use a new --workdir"), UNCHANGED,
         setup="trained", mock=True, slow=True),
    Case("other_resolution", "resumed a workdir at another resolution",
         (FM, WD, "{tiny}", "--config.data.resolution=96"), 2,
         ("data.resolution: 28 in the workdir vs 96 now",), UNCHANGED, setup="trained",
         mock=True, slow=True),
    Case("damaged_checkpoint", "resumed after the newest checkpoint was truncated (disk full, "
         "copy cut short)", (FM, WD, "{tiny}", "--config.num_iterations=4"), 0,
         ("WARNING: checkpoint 4 is damaged", "resumed from an older one"),
         "checkpoint 4 moved to checkpoints_damaged/4 (kept); resumed from 2; the final state "
         "equals the undamaged run's, bit for bit",
         setup="damaged", stream="stdout", mock=True, slow=True),
    # While training.
    Case("workdir_locked", "started a second run in a workdir where one is training",
         (FM, WD, "{tiny}", "--config.num_iterations=400"), 2,
         ("workdir {workdir} is in use by pid", "pass another --workdir"),
         "the first run is unharmed and goes on", setup="locked", mock=True, slow=True),
    Case("diverged", "resumed a run with an absurd learning rate (1e8)",
         (FM, WD, "{tiny}", "--config.num_iterations=40", "--config.optim.d_init_lr=1e8",
          "--config.optim.d_end_lr=1e8", "--config.max_rollbacks=2"), 3,
         ("stopped: non-finite loss or gradient at step", "after 2 rollbacks",
          "last good: checkpoint 4 in {workdir}/checkpoints", "Lower the learning rate"),
         "rolled back to checkpoint 4 twice (logged in metrics.jsonl), then stopped; the "
         "checkpoints are those of the good run", setup="diverging", mock=True, slow=True),
]
BY_ID = {c.id: c for c in CASES}
assert len(BY_ID) == len(CASES), "duplicate case ids"


def expected(case: Case, workdir: str = "<workdir>", tmp: str = "<tmp>") -> tuple[str, ...]:
  return tuple(m.format(workdir=workdir, tmp=tmp) for m in case.message)


def normalize(line: str, workdir: str, tmp: str) -> str:
  """An observed line with this run's paths and pids replaced by placeholders."""
  line = line.replace(workdir, "<workdir>").replace(tmp, "<tmp>")
  return re.sub(r"\bpid \d+", "pid <pid>", line)


# ---------------------------------------------------------------------------------------------
# docs/errors.md

HEADER = """\
# Errors: what you did, what igan_jax says, what happens to the workdir

Generated by `python -m tests.errors_table` from the table in `tests/errors_table.py`; every row
is a test in `tests/test_errors.py` that runs the command line. Do not edit by hand.

Every bad input ends with one line that names the fix, exit status 2, and nothing written into
an existing workdir. A damaged checkpoint is not an error: the run says so and goes on (exit 0).
Training that keeps producing non-finite values stops with exit status 3 after
`config.max_rollbacks` rollbacks. Messages are the ones observed when the table was last
generated, with `<workdir>`, `<tmp>` and `<pid>` for the paths and pid of that run; `{tiny}`
stands for the small-model flags the tests train with (`TINY` in `tests/helpers.py`).
"""


def _code(text: str) -> str:
  text = text.replace("|", "\\|")
  return f"`` {text} ``" if "`" in text else f"`{text}`"


def command(case: Case) -> str:
  args = [a.format(workdir="<workdir>", tmp="<tmp>", tiny="{tiny}") for a in case.args]
  return " ".join(["python -m igan_jax.main"] + args)


def render(observed: dict[str, str]) -> str:
  """The whole of docs/errors.md. An observed message that lacks one of its row's expected
  substrings (the table changed since) is replaced by the expected substrings."""
  kept = {}
  rows = ["| Case | What you did | Command | Exit | Message | Workdir |",
          "|---|---|---|---|---|---|"]
  for c in CASES:
    msg = observed.get(c.id)
    if msg is not None and all(e in msg for e in expected(c)):
      kept[c.id] = msg
      shown = _code(msg)
    else:
      shown = " … ".join(_code(e) for e in expected(c)) + " (expected)"
    rows.append(f"| `{c.id}` | {c.did} | {_code(command(c))} | {c.exit} | {shown} | "
                f"{c.workdir} |")
  observed_json = json.dumps(kept, indent=1, sort_keys=True, ensure_ascii=False)
  return (HEADER + "\n" + "\n".join(rows) + "\n\n<!-- observed messages, read back by "
          "`--no-run`:\n" + observed_json.replace("--", "\\u002d\\u002d") + "\n-->\n")


def read_observed(path: str = DOC) -> dict[str, str]:
  """The observed messages recorded in an existing docs/errors.md ({} if none)."""
  if not os.path.exists(path):
    return {}
  text = open(path, encoding="utf-8").read()
  m = re.search(r"<!-- observed messages, read back by `--no-run`:\n(.*)\n-->\n\Z", text, re.S)
  return json.loads(m.group(1)) if m else {}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--no-run", action="store_true",
                      help="keep the messages recorded in docs/errors.md; run nothing")
  parser.add_argument("--only", default="",
                      help="comma-separated case ids to run; the others keep their messages")
  args = parser.parse_args(argv)
  only = [i for i in args.only.split(",") if i]
  unknown = sorted(set(only) - set(BY_ID))
  if unknown:
    parser.error(f"unknown case ids {unknown}; the ids are in tests/errors_table.py CASES")
  observed = read_observed()
  if not args.no_run:
    with tempfile.TemporaryDirectory() as tmp:
      record = os.path.join(tmp, "observed.jsonl")
      env = dict(os.environ, IGAN_ERRORS_RECORD=record)
      test_file = os.path.join(ROOT, "tests", "test_errors.py")
      targets = [f"{test_file}::test_case[{i}]" for i in only] or [test_file, "-k", "test_case"]
      r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
                         + targets, cwd=ROOT, env=env)
      if r.returncode != 0:
        sys.exit(f"tests/test_errors.py failed (exit {r.returncode}); docs/errors.md not written")
      if os.path.exists(record):
        for line in open(record, encoding="utf-8"):
          row = json.loads(line)
          observed[row["id"]] = row["message"]
  os.makedirs(os.path.dirname(DOC), exist_ok=True)
  with open(DOC, "w", encoding="utf-8") as f:
    f.write(render(observed))
  print(f"wrote {os.path.relpath(DOC, ROOT)} ({len(CASES)} cases)")


if __name__ == "__main__":
  main()
