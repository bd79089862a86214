# Two entry points for a fresh machine with Python 3.11+ and make: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= feeds.yaml
DB ?= db/coverage.db

.PHONY: run test lint install dev browser bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

## Collector on its schedule plus Datasette on http://127.0.0.1:8001 (Ctrl-C stops both).
run: install
	$(BIN)/monitor run --config $(CONFIG) --db $(DB)

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Headless Chromium for the browser tests, from Debian's package (needs root; skipped otherwise).
browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

## Every check CI runs: lint, types, tests.
test: lint browser
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

## Benchmarks (not part of `make test`): `make bench`, or `make bench-quick` (under 2 minutes).
## With the dev extra: the naive baseline and the page and load benchmarks are httpx clients.
bench: dev
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.stories_bench
	$(BIN)/python -m bench.growth_bench
	$(BIN)/python -m bench.pages_bench
	$(BIN)/python -m bench.load_bench

bench-quick: dev
	$(BIN)/python -m bench.run --quick
	$(BIN)/python -m bench.stories_bench --quick
	$(BIN)/python -m bench.growth_bench --quick
	$(BIN)/python -m bench.pages_bench --quick
	$(BIN)/python -m bench.load_bench --quick
