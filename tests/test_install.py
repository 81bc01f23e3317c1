"""The package installs: pyproject.toml declares the `igan-jax` command and the requirements
files' dependencies, and a wheel built from this tree (offline, no dependencies fetched) installs
into an empty directory whose igan_jax runs `--mode=params` from another working directory."""
import fnmatch
import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11 (the package itself needs ≥ 3.10)
# What the build needs none of (and what would make the copy slow or the build pick up stale
# files); everything else of the working tree is copied, so the build sees what a clone has.
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "runs", "workdirs", "build", "dist",
                                    "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis")


def pyproject():
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)


def requirements(name):
  """The requirement lines of a requirements file: no comments, no `-r` includes."""
  with open(os.path.join(ROOT, name)) as f:
    lines = [line.split("#", 1)[0].strip() for line in f]
  return [line for line in lines if line and not line.startswith("-")]


def canonical(req):
  """A requirement as a comparable value: no spaces, lower case, its version specifiers in
  sorted order (a wheel's metadata may list `>=a,<b` as `<b,>=a`)."""
  req = re.sub(r"\s+", "", req).lower()
  name = re.match(r"[a-z0-9._\[\]-]+", req).group(0)
  return name + ",".join(sorted(req[len(name):].split(",")))


def test_pyproject_declares_the_command_and_the_requirements():
  project = pyproject()["project"]
  assert project["name"] == "igan-jax"
  assert project["scripts"] == {"igan-jax": "igan_jax.main:run"}
  from igan_jax import main
  assert callable(main.run)
  # The runtime list is requirements.txt itself; the extras repeat the other two files.
  assert "dependencies" in project["dynamic"]
  dynamic = pyproject()["tool"]["setuptools"]["dynamic"]
  assert dynamic["dependencies"] == {"file": ["requirements.txt"]}
  extras = project["optional-dependencies"]
  assert extras["test"] == requirements("requirements-test.txt")
  assert extras["cuda"] == requirements("requirements-cuda.txt")
  # What the runtime reads from disk besides modules goes into the package.
  data = pyproject()["tool"]["setuptools"]["package-data"]["igan_jax.evaluation"]
  weights = os.listdir(os.path.join(ROOT, "igan_jax", "evaluation", "weights"))
  assert weights and all(any(fnmatch.fnmatch(f"weights/{w}", p) for p in data)
                         for w in weights)


def test_wheel_installs_and_runs_from_another_directory(tmp_path):
  """A wheel build, an install and a CLI start: ~16 s on 2 shared, busy cores."""
  # The build backend, used without isolation (offline); torch, a test requirement, needs the
  # same version.
  pytest.importorskip("setuptools", minversion="77")
  src, dist, target, cwd = (tmp_path / d for d in ("src", "dist", "target", "elsewhere"))
  shutil.copytree(ROOT, src, ignore=NOT_COPIED)
  cwd.mkdir()
  env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
  env.pop("PYTHONPATH", None)
  pip = [sys.executable, "-m", "pip", "-q"]
  r = subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(dist),
                            str(src)], cwd=str(cwd), env=env, capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  wheels = glob.glob(str(dist / "igan_jax-*.whl"))
  assert len(wheels) == 1, os.listdir(dist)
  with zipfile.ZipFile(wheels[0]) as whl:
    names = set(whl.namelist())
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    entry_points = whl.read(f"{info}/entry_points.txt").decode()
    metadata = whl.read(f"{info}/METADATA").decode()
  assert re.search(r"^\[console_scripts\]\s*\nigan-jax\s*=\s*igan_jax\.main:run\s*$",
                   entry_points, re.M), entry_points
  modules = {os.path.relpath(p, ROOT).replace(os.sep, "/")
             for p in glob.glob(os.path.join(ROOT, "igan_jax", "**", "*.py"), recursive=True)}
  assert modules <= names, sorted(modules - names)
  assert {f"igan_jax/evaluation/weights/{w}"
          for w in os.listdir(os.path.join(ROOT, "igan_jax", "evaluation", "weights"))} <= names
  assert not [n for n in names if n.startswith(("tests/", "experiments/", "docs/"))]
  requires = {canonical(line.split(":", 1)[1]) for line in metadata.splitlines()
              if line.startswith("Requires-Dist:") and "extra ==" not in line}
  assert requires == {canonical(r) for r in requirements("requirements.txt")}

  r = subprocess.run(pip + ["install", "--no-deps", "--target", str(target), wheels[0]],
                     cwd=str(cwd), env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  script = target / "bin" / "igan-jax"
  assert script.exists(), os.listdir(target)
  # The installed copy, not this checkout: only the target directory is added to sys.path
  # (the dependencies come from this test's environment).
  run_env = dict(env, PYTHONPATH=str(target), JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  r = subprocess.run([sys.executable, "-c", "import igan_jax.main; print(igan_jax.main.__file__)"],
                     cwd=str(cwd), env=run_env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0 and r.stdout.strip().startswith(str(target)), r.stdout + r.stderr
  r = subprocess.run([sys.executable, str(script), "--compilation_cache=",
                      f"--config={os.path.join(ROOT, 'experiments', 'fashion_mnist.py')}",
                      "--mode=params"], cwd=str(cwd), env=run_env, capture_output=True,
                     text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert re.search(r"^generator: [\d,]+ parameters$", r.stdout, re.M), r.stdout
  assert re.search(r"^discriminator: [\d,]+ parameters$", r.stdout, re.M), r.stdout
  assert os.listdir(cwd) == []  # nothing written into the working directory
