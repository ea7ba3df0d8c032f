# Sextant — `make run` runs everything locally; `make test` runs every check.
SHELL := bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY := $(UV) run --frozen
export UV_PYTHON ?= 3.11

.PHONY: help setup run kafka test lint typecheck unit integration e2e js-test schemas bench soak clean

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## Python environment from uv.lock, Kafka into .local/, Chromium, npm packages built
	@[ -x "$(UV)" ] || python3 -m pip install --quiet --user 'uv>=0.5'
	$(UV) sync --frozen --all-packages
	bash deploy/local/kafka.sh fetch
	bash deploy/local/web.sh

run: setup ## Run Sextant: Kafka, every part, the demo project and its traffic (DEMO_TRAFFIC=off: none)
	$(PY) python deploy/local/supervisor.py $(if $(filter off no 0 false,$(DEMO_TRAFFIC)),--no-traffic)

kafka: setup ## Run only the local Kafka broker on 127.0.0.1:9092
	bash deploy/local/kafka.sh start

lint: setup ## ruff
	$(PY) ruff check .
	$(PY) ruff format --check .

typecheck: setup ## mypy --strict
	$(PY) mypy

schemas: setup ## Regenerate the exported JSON Schemas in schemas/json/
	$(PY) python -m sextant.schemas.export

unit: setup ## Unit tests (no infrastructure)
	$(PY) pytest tests/unit -q

integration: setup ## Integration tests (starts a Kafka broker for the session)
	$(PY) pytest tests/integration -q

e2e: setup ## End-to-end tests (the parts as processes)
	$(PY) pytest tests/e2e -q

js-test: setup ## The browser SDK (sdk/js): build, types, node --test, bundle size budgets; the workspace's types and build
	npm --prefix sdk/js test
	npm --prefix services/gateway/web test

test: lint typecheck js-test ## Lint, types, the browser SDK, unit, integration, end-to-end and browser tests
	$(PY) pytest tests -q

bench: setup ## Benchmarks; writes bench/RESULTS.md
	$(PY) python -m bench.run_all

soak: setup ## Ten minutes of load with every fault injected, then an exact account of every event
	$(PY) python -m bench.soak --rate 300 --duration 600

clean: ## Remove local data (Kafka logs, warehouse), keep the Kafka download
	rm -rf .local/kafka-data .local/warehouse
