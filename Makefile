# Quick start: `make demo` (install + run the demo) and `make test` (install + checks + the whole suite).
# `make test-fast`: the checks (ruff, ruff format, mypy) and the tests not marked slow, postgres, spark or notebooks (pyproject.toml), a
# loop of under 2 minutes on 2 cores; `make test` runs everything.
# Both run pytest on PYTEST_WORKERS pytest-xdist worker processes (default 2, the cores of a developer's and CI's
# machine), each given whole test files (--dist loadfile: a module's Spark session or seeded database is made once);
# `make test PYTEST_WORKERS=0` runs the suite in one process.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= 2
PYTEST = $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: demo test test-fast install bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"

demo: install
	$(BIN)/optiq demo

# The checks every change passes before its tests: lint, formatting and types.
CHECKS = $(BIN)/ruff check src tests benchmarks && $(BIN)/ruff format --check src tests benchmarks && $(BIN)/mypy

test: install
	$(CHECKS)
	$(PYTEST)

test-fast: install
	$(CHECKS)
	$(PYTEST) -m "not slow and not postgres and not spark and not notebooks"

bench: install  # writes out/RESULTS.md (untracked); --out benchmarks/RESULTS.md records the figures
	$(BIN)/python -m benchmarks.run

lint: install
	$(CHECKS)

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks build dist

.PHONY: notebooks
notebooks: install  # re-execute every notebook and save it with its outputs (the Postgres one needs a server)
	$(BIN)/python tests/docs/test_notebooks.py
