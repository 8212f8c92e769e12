# The two commands a new user needs are `make demo` and `make test`; both create the
# environment first. Everything installed comes from pyproject.toml + uv.lock.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.installed
# Spark's jars (Iceberg, hadoop-aws, SQLite JDBC), pinned in infra/spark/pom.xml, fetched once.
JARS := .jars
JARS_STAMP := $(JARS)/.fetched
MVN ?= mvn
PYTHON := $(shell scripts/find-python.sh 2>/dev/null)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export DAGSTER_HOME ?= $(CURDIR)/.dagster

.PHONY: help setup demo ui test test-fast lint format snapshot bench clean check-prerequisites

help:
	@echo "make demo       generate, land and materialize a sample delivery, then say where to look"
	@echo "make test       run the whole test suite (make test-fast skips the slow end-to-end tests)"
	@echo "make ui         Dagster UI on http://127.0.0.1:3000"
	@echo "make lint       ruff, pyright and cfn-lint of the CloudFormation template"
	@echo "make snapshot   store the definitions snapshot after an intended change"
	@echo "make bench      every speed target of issue 17 in one table (about 30 min; docs/benchmarks.md)"
	@echo "make setup      create $(VENV) from uv.lock (the other targets do this when needed)"

check-prerequisites:
	@scripts/check-prerequisites.sh

$(UV):
	@scripts/find-python.sh >/dev/null
	@echo "Installing uv $(UV_VERSION) into $(TOOLS)/"
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(STAMP): pyproject.toml uv.lock | $(UV)
	@scripts/check-prerequisites.sh
	@echo "Creating $(VENV) from uv.lock"
	@$(UV) sync --frozen --python "$(PYTHON)" --quiet
	@touch $@

$(JARS_STAMP): infra/spark/pom.xml
	@MVN="$(MVN)" scripts/check-maven.sh
	@echo "Fetching Spark's jars into $(JARS)/ with Maven (once)"
	@rm -rf $(JARS) && mkdir -p $(JARS)
	@$(MVN) -B --no-transfer-progress -f infra/spark/pom.xml dependency:copy-dependencies \
		-DoutputDirectory="$(CURDIR)/$(JARS)" > "$(JARS)/maven.log" 2>&1 \
		|| { tail -30 "$(JARS)/maven.log"; echo "Fetching Spark's jars failed (log: $(JARS)/maven.log)." >&2; exit 1; }
	@touch $@

setup: $(STAMP) $(JARS_STAMP)

demo: $(STAMP) $(JARS_STAMP)
	@$(VENV)/bin/clinical-platform demo

ui: $(STAMP) $(JARS_STAMP)
	@mkdir -p "$(DAGSTER_HOME)"
	@test -f "$(DAGSTER_HOME)/dagster.yaml" || printf 'telemetry:\n  enabled: false\n' > "$(DAGSTER_HOME)/dagster.yaml"
	@if [ -z "$$CLINICAL_PSEUDONYM_KEY" ]; then echo "Using the demo pseudonym key; set CLINICAL_PSEUDONYM_KEY for real data."; fi
	CLINICAL_PSEUDONYM_KEY="$${CLINICAL_PSEUDONYM_KEY:-demo-key-not-for-real-data}" \
		$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

test: $(STAMP) $(JARS_STAMP)
	$(VENV)/bin/pytest --durations=25 $(PYTEST_ARGS)

test-fast: $(STAMP) $(JARS_STAMP)
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright
	$(VENV)/bin/cfn-lint --regions eu-central-1 -- infra/cloudformation/platform.yaml

# The table is also written into docs/benchmarks.md; BENCH_ARGS=--quick for one pair each.
bench: $(STAMP) $(JARS_STAMP)
	$(VENV)/bin/python benchmarks/bench.py --output docs/benchmarks.md $(BENCH_ARGS)

snapshot: $(STAMP)
	UPDATE_SNAPSHOTS=1 $(VENV)/bin/pytest -q clinical_platform_tests/test_definitions.py -k snapshot

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(TOOLS) $(JARS) .lake .dagster .demo .pytest_cache .ruff_cache
