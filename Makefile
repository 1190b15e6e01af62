# Accessa Ingest. A newcomer needs two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA_STAMP := infra/kafka/lib/.resolved
KUSTOMIZE := .accessa/bin/kustomize
PYTEST_ARGS ?=

.PHONY: setup run test test-fast bench reliability lint format clean

setup: $(STAMP) $(KAFKA_STAMP) ## venv, Python deps (constrained), Kafka jars; quick when done

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

$(KAFKA_STAMP): infra/kafka/pom.xml
	mvn -q -B -f infra/kafka/pom.xml dependency:copy-dependencies
	@touch $@

$(KUSTOMIZE): infra/k8s/install-kustomize.sh
	bash infra/k8s/install-kustomize.sh

run: setup ## everything up, the pipeline running locally (Ctrl-C stops it)
	$(BIN)/accessa infra up
	$(BIN)/accessa migrate
	$(BIN)/accessa run all

test: setup $(KUSTOMIZE) ## unit, integration and e2e tests on a real broker and Postgres
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: setup ## unit tests only (no services)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

bench: setup ## benchmarks -> bench/results.json
	$(BIN)/python -m bench.run

RELIABILITY_TESTS := tests/integration/test_poison_catalogue.py tests/e2e/test_crash_matrix.py \
	tests/e2e/test_infra_faults.py
reliability: setup ## kills, infrastructure faults, poison -> bench/reliability.json (make test runs a smaller batch)
	ACCESSA_RELIABILITY_REPORT=bench/reliability.json ACCESSA_RELIABILITY_DOCS=12 ACCESSA_RELIABILITY_FAULT_DOCS=50 \
		$(BIN)/pytest $(RELIABILITY_TESTS) $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## stop local infra, remove state, caches and the venv
	-$(BIN)/accessa infra down --purge
	rm -rf $(VENV) .accessa .accessa-test .pytest_cache .ruff_cache infra/kafka/lib *.egg-info
