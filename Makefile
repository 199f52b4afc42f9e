# Quick start: `make demo` (install + run the demo) and `make test` (install + checks + the whole suite).
# `make test-fast`: the checks (ruff, ruff format, mypy) and the tests not marked slow, postgres, spark or notebooks (pyproject.toml), a
# loop of under 2 minutes on 2 cores; `make test` runs everything.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

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
	$(BIN)/python -m pytest -q

test-fast: install
	$(CHECKS)
	$(BIN)/python -m pytest -q -m "not slow and not postgres and not spark and not notebooks"

bench: install  # writes out/RESULTS.md (untracked); --out benchmarks/RESULTS.md records the figures
	$(BIN)/python -m benchmarks.run

lint: install
	$(CHECKS)

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks build dist

.PHONY: notebooks
notebooks: install  # re-execute every notebook and save it with its outputs (the Postgres one needs a server)
	$(BIN)/python tests/docs/test_notebooks.py
