# Accessa Ingest. A newcomer needs two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA_STAMP := infra/kafka/lib/.resolved
KUSTOMIZE := .accessa/bin/kustomize
PYTEST_ARGS ?=

.PHONY: setup system-packages run test test-fast bench reliability fuzz eval lint typecheck format clean

setup: $(STAMP) $(KAFKA_STAMP) system-packages ## venv, Python deps (constrained), Kafka jars, Debian packages; quick when done

# Debian packages some tests need, installed only where we may (root, apt-get), never failing
# setup (without them those tests skip, saying why): postgresql-15, a Postgres built with TLS
# for tests/integration/test_postgres_tls.py (the embedded wheel's has none; present on the dev
# image today), and pgbouncer, TLS in front of the embedded Postgres for
# tests/e2e/test_postgres_tls_pipeline.py. A cluster their install may create and start (5432,
# 6432; Docker images' policy-rc.d stops the start) is never used: tests take their own ports.
# tesseract-ocr-eng is the English data the parser's OCR reads scanned pages with; without it
# such documents fail as `ocr_unavailable` and the OCR tests skip. prometheus brings promtool,
# which tests/unit/test_alert_rules.py runs on infra/prometheus (its server is not used).
# chromium and chromium-driver: tests/e2e/test_console_browser.py drives the console in them.
system-packages:
	@missing=""; \
	test -x /usr/lib/postgresql/15/bin/postgres || missing="$$missing postgresql-15"; \
	command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || missing="$$missing pgbouncer"; \
	ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata >/dev/null 2>&1 \
	  || missing="$$missing tesseract-ocr tesseract-ocr-eng"; \
	command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	  || missing="$$missing chromium chromium-driver"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  echo "apt-get install$$missing"; \
	  apt-get install -y -q $$missing >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$missing >/dev/null 2>&1; } \
	  || echo "setup: could not install$$missing; the tests that need it skip"; \
	fi; true

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

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e '.[bench]'
	@touch $@

bench: setup $(BENCH_STAMP) ## benchmarks (the LlamaIndex peer included) -> bench/results.json
	$(BIN)/python -m bench.run

RELIABILITY_TESTS := tests/integration/test_poison_catalogue.py tests/e2e/test_crash_matrix.py \
	tests/e2e/test_infra_faults.py tests/e2e/test_kafka_cluster.py
reliability: setup ## kills, infrastructure faults, poison -> bench/reliability.json (make test runs a smaller batch)
	ACCESSA_RELIABILITY_REPORT=bench/reliability.json ACCESSA_RELIABILITY_DOCS=12 ACCESSA_RELIABILITY_FAULT_DOCS=50 \
		ACCESSA_RELIABILITY_FAILOVER_DOCS=50 \
		$(BIN)/pytest $(RELIABILITY_TESTS) $(PYTEST_ARGS)

FUZZ_STAMP := $(VENV)/.fuzz-installed
$(FUZZ_STAMP): $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e '.[fuzz]'
	@touch $@

# Coverage-guided fuzzing of upload validation and the parser's capped worker (bench/fuzz.py),
# ACCESSA_FUZZ_SECONDS long (default 180); problem inputs -> tests/data/fuzz_regressions/.
fuzz: setup $(FUZZ_STAMP) ## bounded fuzzing -> bench/reliability.json["fuzz"]
	$(BIN)/python -m bench.fuzz

EVAL_STAMP := $(VENV)/.eval-installed
$(EVAL_STAMP): $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e '.[eval]'
	@touch $@

# Retrieval eval (bench/eval.py): bench/eval_questions.json through the real pipeline and API
# search (hybrid and vector, chunkers @1 and @2) against a LlamaIndex peer on the same mock
# embedder; starts local infrastructure and the pipeline, and stops what it started.
eval: setup $(EVAL_STAMP) ## retrieval hit@1/hit@5/MRR vs a LlamaIndex peer -> bench/eval.json
	$(BIN)/python -m bench.eval

lint: setup typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup ## mypy over the packages ([tool.mypy] in pyproject.toml: which, how strict)
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## stop local infra, remove state, caches and the venv
	-$(BIN)/accessa infra down --purge
	rm -rf $(VENV) .accessa .accessa-test .pytest_cache .ruff_cache infra/kafka/lib *.egg-info
