# Two commands on a fresh machine with only Python 3: `make run`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install run test lint typecheck docs bench clean

install: $(INSTALLED)

$(INSTALLED): requirements.txt requirements-dev.txt setup.cfg
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

## Serve on 127.0.0.1:8000 (embedded Redis and SQLite unless REDIS_URL / DATABASE_URL are set).
run: install
	$(BIN)/signin init-db --admin
	$(BIN)/signin serve --host 127.0.0.1 --port 8000

## Run the test suite (embedded Redis and SQLite unless REDIS_URL / DATABASE_URL are set).
test: install
	$(BIN)/python -m pytest

## Benchmark on this box (~4-5 min on 2 cores); results in bench/results/.
bench: install
	$(BIN)/python -m bench.run

## ruff, and the layers kept by import-linter (the contracts are in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo

## Type-check the package (mypy; its settings are in pyproject.toml).
typecheck: install
	$(BIN)/mypy

## Build the documentation site into docs/_build/html (Sphinx + MyST); any warning, a broken link among them, fails it.
docs: install
	$(BIN)/sphinx-build -W --keep-going -n -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) instance build *.egg-info docs/_build
