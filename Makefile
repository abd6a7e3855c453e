# Provisioning worker: `make run` sets everything up and starts a worker; `make test` runs the suite.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# psql-free database creation: DATABASE_URL (or the default) names the database to create.
DB_TOOL := $(BIN)/python -m worker.db.create

.PHONY: help install run worker db-create db-migrate db-downgrade db-revision db-check test test-unit test-unit-offline test-arq-compat lint format lock clean bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned dependencies

run: install db-create db-migrate worker  ## venv, install, create the database if missing, migrate, start a worker

worker: install  ## start a worker (arq worker.main.WorkerSettings)
	$(BIN)/arq worker.main.WorkerSettings

db-create: install  ## create the database named in DATABASE_URL if it does not exist
	$(DB_TOOL)

db-migrate: install  ## upgrade the database to the latest migration (the release step)
	$(BIN)/alembic upgrade head

db-downgrade: install  ## undo the latest migration
	$(BIN)/alembic downgrade -1

db-revision: install  ## autogenerate a migration: make db-revision m="add thing"
	@test -n "$(m)" || { echo 'usage: make db-revision m="what it changes"'; exit 2; }
	$(BIN)/alembic revision --autogenerate -m "$(m)"

db-check: install  ## fail if the models and the migrations disagree
	$(BIN)/alembic check

test: install  ## run the test suite (real PostgreSQL and Redis; a throw-away test database) with branch coverage
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest; status=$$?; \
	  $(BIN)/coverage combine --quiet && $(BIN)/coverage report && exit $$status

test-unit: install  ## the unit tier only: no PostgreSQL, no Redis, no network (sockets blocked), a few seconds
	$(BIN)/pytest tests/unit

test-unit-offline: install  ## the unit tier in a network namespace with no interfaces, where user namespaces exist
	@if unshare -rn true 2>/dev/null; then unshare -rn $(BIN)/pytest tests/unit; \
	 else echo "no user namespaces here: the unit tier's socket block stands in"; $(MAKE) test-unit; fi

test-arq-compat: install  ## ARQ's own test suite (pinned version) against our worker, on a private redis-server
	$(BIN)/python -m tests.integration.runtime.arq_compat

bench: install  ## benchmarks (own databases and Redis keys); table to stdout and bench/results.md
	$(BIN)/python -m bench.run --write $(BENCH_ARGS)

lint: install  ## ruff, mypy --strict, and the import layers (lint-imports, pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy worker bench tests
	$(BIN)/lint-imports --no-cache

format: install  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

lock:  ## re-pin requirements*.lock from pyproject.toml in throw-away venvs
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv && .lock-venv/bin/pip install --quiet '.[fast]' \
	  && { echo "# Pinned runtime dependencies (make lock regenerates this from pyproject.toml)."; \
	       .lock-venv/bin/pip freeze --exclude provisioning-worker; } > requirements.lock
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv && .lock-venv/bin/pip install --quiet '.[dev,fast,bench]' \
	  && { echo "# Pinned runtime + dev dependencies (make lock regenerates this from pyproject.toml)."; \
	       .lock-venv/bin/pip freeze --exclude provisioning-worker; } > requirements-dev.lock
	rm -rf .lock-venv build *.egg-info

clean:  ## remove the venv and caches
	rm -rf $(VENV) .arq-compat .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
