# The two README commands: `make train` (set up + train on real Fashion-MNIST, offline) and
# `make test` (set up + the whole test suite). Both work on a fresh Debian machine as root.
PY := .venv/bin/python
ITERS ?= 2000
WORKDIR ?= runs/fashion_mnist

.PHONY: setup setup-test data train test test-fast bench report reproduce ablation clean

# pip installs without byte-compiling every file of every package (--no-compile: most of the
# test requirements' install time, docs/speed.md); Python writes the bytecode of the modules a
# command imports the first time it imports them, so make's commands run without
# PYTHONDONTWRITEBYTECODE.
unexport PYTHONDONTWRITEBYTECODE

.venv/.ok: requirements.txt
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -r requirements.txt
	touch $@

.venv/.test-ok: .venv/.ok requirements-test.txt
	$(PY) -m pip install -q --no-compile -r requirements-test.txt
	touch $@

setup: .venv/.ok
	@test -d /usr/share/datasets/fashion-mnist || \
	  (apt-get install -y -q dataset-fashion-mnist || \
	   (apt-get update -q && apt-get install -y -q dataset-fashion-mnist))

setup-test: setup .venv/.test-ok

data: setup
	$(PY) -m igan_jax.data.prepare --dataset=fashion_mnist

train: data
	$(PY) -m igan_jax.main --config=experiments/fashion_mnist.py --workdir=$(WORKDIR) \
	  --config.num_iterations=$(ITERS)

# `data` first: the classifier's and the report's real-data tests need Fashion-MNIST prepared
# (they skip, saying why, where it is not).
test: setup-test data
	$(PY) -m pytest tests -q -p no:cacheprovider -n auto --maxprocesses=4 --dist loadfile --no-loadscope-reorder --durations=15

test-fast: setup-test
	$(PY) -m pytest tests -q -p no:cacheprovider -n auto --maxprocesses=4 --dist loadfile --no-loadscope-reorder -m "not slow"

report: setup
	$(PY) -m igan_jax.report --workdir=$(WORKDIR)

# The Fashion-MNIST reproduction table (igan_jax/reproduce.py): trains IGAN (3 seeds), DCGAN and
# WGAN-GP (2 each) for 3,000 iterations, evaluates, tabulates; rerun to resume. Hours on 2 cores.
reproduce: data
	$(PY) -m igan_jax.reproduce --root=runs/reproduction --docs=docs

# The IGAN recipe's ablation (igan_jax/ablation.py): each measured value of the default recipe set
# back to the paper's / first reconstruction, one at a time, 2 seeds x 1,000 iterations (the
# default recipe: 3 seeds), evaluated and tabulated in docs/ablation_table.md; rerun to resume.
ablation: data
	$(PY) -m igan_jax.ablation --root=runs/ablation --docs=docs

bench: setup
	$(PY) benchmarks/throughput.py --model=igan --resolution=28,96 --batch=64

clean:
	rm -rf .venv
