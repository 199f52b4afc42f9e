# Quick start: `make demo` (install + run the demo) and `make test` (install + run the whole suite).
# `make test-fast`: lint and the tests not marked slow, postgres, spark or notebooks (pyproject.toml), a
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

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -m "not slow and not postgres and not spark and not notebooks"

bench: install  # writes out/RESULTS.md (untracked); --out benchmarks/RESULTS.md records the figures
	$(BIN)/python -m benchmarks.run

lint: install
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks build dist

.PHONY: notebooks
notebooks: install  # re-execute every notebook and save it with its outputs (the Postgres one needs a server)
	$(BIN)/python tests/test_notebooks.py
