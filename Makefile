# One task vocabulary for people, CI and the README. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RECSYS := $(BIN)/recsys
EVENTS ?= data/events.parquet
HOST ?= 127.0.0.1
PORT ?= 8000
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: help venv demo test lint format serve mlflow-ui up down clean

help: ## List every target
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -U pip wheel
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## Create/refresh .venv and install the project (fast when nothing changed)

demo: $(STAMP) ## Run the whole pipeline end to end on generated data (SQLite online store, sqlite MLflow)
	$(RECSYS) data generate --out $(EVENTS)
	$(RECSYS) data validate $(EVENTS)
	$(RECSYS) data features --events $(EVENTS)

test: $(STAMP) ## Run the whole test suite
	$(BIN)/python -m pytest

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared zadanie1 zadanie2 zadanie3 zadanie4

format: $(STAMP) ## Apply ruff formatting and autofixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

serve: $(STAMP) ## Run the inference service on $(HOST):$(PORT) (after make demo); docs at /docs, metrics at /metrics
	$(RECSYS) serve --host $(HOST) --port $(PORT)

up: ## Build and start the whole system with Docker Compose (needs Docker and .env, see .env.example)
	docker compose up -d --build

down: ## Stop the Docker Compose system (volumes kept; docker compose down -v deletes them)
	docker compose down

clean: ## Remove generated data and artifacts (keeps .venv)
	rm -rf data artifacts
