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

.PHONY: help install run test airflow-up airflow-down lint bench clean browser image-push

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

airflow-up: install ## Start Airflow and the MLflow tracking server in the background (prints URLs, password); EXECUTOR=celery for Celery
	$(BIN)/detection-pipeline stack up --executor $(EXECUTOR)

airflow-down: ## Stop the local Airflow stack and its tracking server (EXECUTOR=celery: the Celery one)
	$(BIN)/detection-pipeline stack down --executor $(EXECUTOR)

lint: install ## ruff (including the Airflow 3 rules)
	$(BIN)/ruff check .
	$(BIN)/ruff check --select AIR3 dags plugins include

bench: install ## Run the benchmarks in bench/
	@for f in bench/bench_*.py; do m=$${f%.py}; echo "== $$m"; $(BIN)/python -m $${m//\//.} || exit 1; done

# The project's image in ECR, for the RecordIO shards' SageMaker Processing jobs (sagemaker.shard_processing.image_uri)
# and any Airflow deployment (compose, Helm). Needs Docker and the AWS CLI with push rights.
AWS_REGION ?= us-east-1
ECR_REPO ?= detection-pipeline
TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo latest)
image-push: ## Build the image and push it to ECR: make image-push AWS_REGION=.. ECR_REPO=.. [TAG=..]
	@account=$$(aws sts get-caller-identity --query Account --output text) || exit 1; \
	registry=$$account.dkr.ecr.$(AWS_REGION).amazonaws.com; \
	aws ecr describe-repositories --region $(AWS_REGION) --repository-names $(ECR_REPO) >/dev/null 2>&1 || \
	  aws ecr create-repository --region $(AWS_REGION) --repository-name $(ECR_REPO) >/dev/null || exit 1; \
	aws ecr get-login-password --region $(AWS_REGION) | docker login --username AWS --password-stdin $$registry && \
	docker build -t $$registry/$(ECR_REPO):$(TAG) . && \
	docker push $$registry/$(ECR_REPO):$(TAG) && \
	echo "image_uri: $$registry/$(ECR_REPO):$(TAG)   (set DETECTION__SAGEMAKER__SHARD_PROCESSING__IMAGE_URI to it)"

clean: ## Remove the virtual environment, Airflow home, run outputs and the local tracking server's data
	rm -rf $(VENV) $(TOOLS) .airflow data/runs data/mlflow
