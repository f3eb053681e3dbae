# Two commands for a new user: `make run` (the whole pipeline on the embedded local backend,
# through a real Airflow scheduler) and `make test` (the test suite). Both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_LINK_MODE := copy
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
# local: LocalExecutor on SQLite; celery: PostgreSQL + Redis (Debian packages) + two Celery workers
EXECUTOR ?= local

.PHONY: help install run test airflow-up airflow-down lint bench clean browser

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --compile-bytecode --group distributed --python $(PYTHON)
	@touch $@

$(AIRFLOW_HOME)/airflow.db: $(VENV)/.installed
	@mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/db-migrate.log 2>&1 || (tail -n 40 $(AIRFLOW_HOME)/db-migrate.log; exit 1)

install: $(VENV)/.installed $(AIRFLOW_HOME)/airflow.db ## Create .venv from uv.lock and an Airflow home (SQLite) in .airflow/

run: install ## Run the whole pipeline through a real Airflow scheduler on the local backend (EXECUTOR=celery too)
	$(BIN)/detection-pipeline stack run --executor $(EXECUTOR)

test: install browser ## Run the test suite
	$(BIN)/pytest

browser: ## Install headless Chromium for the browser tests (Debian packages; needs root)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium not installed and not root: browser tests will be skipped"; fi; }

airflow-up: install ## Start Airflow in the background (prints URL and password); EXECUTOR=celery for Celery
	$(BIN)/detection-pipeline stack up --executor $(EXECUTOR)

airflow-down: ## Stop the local Airflow stack (EXECUTOR=celery: the Celery one)
	$(BIN)/detection-pipeline stack down --executor $(EXECUTOR)

lint: install ## ruff (including the Airflow 3 rules)
	$(BIN)/ruff check .
	$(BIN)/ruff check --select AIR3 dags plugins include

bench: install ## Run the benchmarks in bench/
	@for f in bench/bench_*.py; do m=$${f%.py}; echo "== $$m"; $(BIN)/python -m $${m//\//.} || exit 1; done

clean: ## Remove the virtual environment, Airflow home and run outputs
	rm -rf $(VENV) $(TOOLS) .airflow data/runs
