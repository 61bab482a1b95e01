# sparkvision: `make run` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA   ?= auto
ARGS   ?=
STAMP  := $(VENV)/.installed

.PHONY: run test cluster-test experiment notebook setup check-java bench scaling clean

# The stamp is rebuilt only when pyproject.toml changes, so a second `make run` reuses the venv.
$(STAMP): pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV) ..."; $(PYTHON) -m venv $(VENV); }
	@echo "installing sparkvision and its dependencies into $(VENV) ..."
	@$(PY) -m pip install --quiet --upgrade pip
	@# torch==2.13.0 exactly (the torch extra): the CPU build pip finds here, about 1 GB. connect: the Spark Connect client.
	@$(PY) -m pip install --quiet -e '.[test,torch,connect]' 'torch==2.13.0'
	@touch $(STAMP)

setup: $(STAMP)

check-java: $(STAMP)
	@$(PY) -m sparkvision check-java

run: check-java
	$(VENV)/bin/sparkvision run --data $(DATA) $(ARGS)

experiment: check-java
	$(VENV)/bin/sparkvision experiment --data $(DATA) $(ARGS)

# JupyterLab is an optional extra: the core install stays lean.
notebook: check-java
	@$(PY) -m pip install --quiet -e '.[notebook]'
	$(VENV)/bin/jupyter lab notebooks/cifar10_pipeline.ipynb

# Two pytest workers (pytest-xdist), a test file each at a time: the suite's processes leave a
# quarter of two cores idle when run one test at a time (BENCHMARKS.md § 4).
test: check-java
	$(PY) -m pytest -q -m "not cluster" -n 2 --dist loadfile

# A standalone master and two workers on 127.0.0.1 (tests/test_cluster.py): minutes, so not in `make test`.
cluster-test: check-java
	$(PY) -m pytest -q -m cluster tests/test_cluster.py

bench: check-java
	$(PY) benchmarks/seed_vs_sparkvision.py $(DATA)

# Cost against data size (benchmarks/scaling.py): DATA must be a folder holding cifar-10-batches-py.
scaling: check-java
	$(PY) benchmarks/scaling.py $(DATA) $(ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
