# Sextant — `make run` runs everything locally; `make test` runs every check.
SHELL := bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY := $(UV) run --frozen
export UV_PYTHON ?= 3.11

.PHONY: help setup run kafka cluster test lint typecheck unit integration e2e js-test schemas bench soak chaos failover rebalance manifests clean

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## Python environment from uv.lock, Kafka and kustomize into .local/, Chromium, npm packages built
	@[ -x "$(UV)" ] || python3 -m pip install --quiet --user 'uv>=0.5'
	$(UV) sync --frozen --all-packages
	bash deploy/local/kafka.sh fetch
	bash deploy/local/kustomize.sh fetch
	bash deploy/local/web.sh

run: setup ## Run Sextant: Kafka, every part, the demo project and its traffic (DEMO_TRAFFIC=off: none)
	$(PY) python deploy/local/supervisor.py $(if $(filter off no 0 false,$(DEMO_TRAFFIC)),--no-traffic)

kafka: setup ## Run only the local Kafka broker on 127.0.0.1:9092
	bash deploy/local/kafka.sh start

cluster: setup ## Run a local three-node Kafka cluster on 127.0.0.1:9092, 9094, 9096
	bash deploy/local/kafka.sh cluster

lint: setup ## ruff
	$(PY) ruff check .
	$(PY) ruff format --check .

typecheck: setup ## mypy --strict
	$(PY) mypy

schemas: setup ## Regenerate the exported JSON Schemas in schemas/json/, the gateway's openapi.json and the workspace's TypeScript types
	$(PY) python -m sextant.schemas.export
	$(PY) python -m sextant.gateway.openapi_export
	npm --prefix services/gateway/web run --silent api-schema

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

soak: setup ## Ten minutes of load with every fault injected: live again after each, then an exact account of every event
	$(PY) python -m bench.soak --rate 300 --duration 600

chaos: setup ## Twenty rounds of kill -9 (processor, gateway with sink, collector) under load; every part must come back to life
	$(PY) python -m bench.chaos --rounds 20 --rate 400

failover: setup ## Three runs: Kafka nodes killed under load (busiest leader, controller), every event accounted for
	$(PY) python -m bench.failover --runs 3

rebalance: setup ## Three runs: collectors (HAProxy), processor workers and the sink added and removed under load
	$(PY) python -m bench.rebalance --runs 3

manifests: setup ## Render the Kubernetes manifests (kustomize): production, production with KEDA
	bash deploy/local/kustomize.sh build deploy/k8s/overlays/production
	bash deploy/local/kustomize.sh build deploy/k8s/overlays/production-keda

clean: ## Remove local data (Kafka logs, warehouse), keep the Kafka download
	rm -rf .local/kafka-data .local/warehouse
