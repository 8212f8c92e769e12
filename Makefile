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
# The Spark driver's class-data archive (clinical_platform/launchers/cds.py): ~3 s off each start.
CDS_STAMP := $(JARS)/.cds
# The EMR 6.15 lane: the same lock with EMR 6.15's PySpark, and Iceberg 1.4's jars
# (infra/spark/pom-spark34.xml); both made once, beside the main ones.
EMR_PYSPARK := 3.4.1
VENV_SPARK34 := .venv-spark34
SPARK34_STAMP := $(VENV_SPARK34)/.installed
JARS_SPARK34 := .jars-spark34
JARS_SPARK34_STAMP := $(JARS_SPARK34)/.fetched
CDS_SPARK34_STAMP := $(JARS_SPARK34)/.cds
MVN ?= mvn
PYTHON := $(shell scripts/find-python.sh 2>/dev/null)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export DAGSTER_HOME ?= $(CURDIR)/.dagster

.PHONY: help setup demo ui test test-fast test-emr-spark lint format snapshot bench bench-scale bench-families clean check-prerequisites

help:
	@echo "make demo       generate, land and materialize a sample delivery, then say where to look"
	@echo "make test       run the whole test suite (make test-fast skips the slow end-to-end tests;"
	@echo "                make test-emr-spark runs the job tests and the pilot on EMR 6.15's Spark 3.4.1)"
	@echo "make ui         Dagster UI on http://127.0.0.1:3000"
	@echo "make lint       ruff, pyright and cfn-lint of the CloudFormation template"
	@echo "make snapshot   store the definitions snapshot after an intended change"
	@echo "make bench      every speed target of issue 17 in one table (about 30 min; docs/benchmarks.md)"
	@echo "make bench-scale a 2 GiB .xpt ingested with a 1 GB driver heap (about 10 min; needs ~5 GB disk)"
	@echo "make bench-families  sensor (1,000 subject-days, 86.4M readings) against bare PySpark;"
	@echo "                 BENCH_FAMILIES_ARGS='omics --samples 1000 --genes 20000' for omics"
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
	@$(UV) sync --frozen --python "$(PYTHON)" --quiet --compile-bytecode
	@touch $@

$(JARS_STAMP): infra/spark/pom.xml
	@MVN="$(MVN)" scripts/check-maven.sh
	@echo "Fetching Spark's jars into $(JARS)/ with Maven (once)"
	@rm -rf $(JARS) && mkdir -p $(JARS)
	@$(MVN) -B --no-transfer-progress -f infra/spark/pom.xml dependency:copy-dependencies \
		-DoutputDirectory="$(CURDIR)/$(JARS)" > "$(JARS)/maven.log" 2>&1 \
		|| { tail -30 "$(JARS)/maven.log"; echo "Fetching Spark's jars failed (log: $(JARS)/maven.log)." >&2; exit 1; }
	@touch $@

# The lock exported with EMR 6.15's pyspark instead of the locked one; its py4j pin is dropped
# because each pyspark pins its own exact py4j. Nothing else changes (docs/emr.md).
$(SPARK34_STAMP): pyproject.toml uv.lock | $(UV)
	@scripts/check-prerequisites.sh
	@echo "Creating $(VENV_SPARK34) from uv.lock with pyspark==$(EMR_PYSPARK) (EMR 6.15's Spark)"
	@rm -rf $(VENV_SPARK34)
	@$(UV) venv --quiet --python "$(PYTHON)" $(VENV_SPARK34)
	@set -o pipefail; $(UV) export --frozen --all-groups --no-hashes --no-emit-project --quiet \
		| sed -e 's/^pyspark==.*/pyspark==$(EMR_PYSPARK)/' -e '/^py4j==/d' \
		> $(VENV_SPARK34)/requirements.txt
	@$(UV) pip install --quiet --compile-bytecode --python $(VENV_SPARK34)/bin/python \
		-r $(VENV_SPARK34)/requirements.txt
	@$(UV) pip install --quiet --python $(VENV_SPARK34)/bin/python --no-deps -e .
	@touch $@

$(JARS_SPARK34_STAMP): infra/spark/pom-spark34.xml
	@MVN="$(MVN)" scripts/check-maven.sh
	@echo "Fetching Spark 3.4's jars into $(JARS_SPARK34)/ with Maven (once)"
	@rm -rf $(JARS_SPARK34) && mkdir -p $(JARS_SPARK34)
	@$(MVN) -B --no-transfer-progress -f infra/spark/pom-spark34.xml dependency:copy-dependencies \
		-DoutputDirectory="$(CURDIR)/$(JARS_SPARK34)" > "$(JARS_SPARK34)/maven.log" 2>&1 \
		|| { tail -30 "$(JARS_SPARK34)/maven.log"; echo "Fetching Spark 3.4's jars failed (log: $(JARS_SPARK34)/maven.log)." >&2; exit 1; }
	@touch $@

$(CDS_STAMP): $(STAMP) $(JARS_STAMP)
	@echo "Dumping the Spark driver's class-data archive (once)"
	@$(VENV)/bin/python -m clinical_platform.launchers.cds
	@touch $@

$(CDS_SPARK34_STAMP): $(SPARK34_STAMP) $(JARS_SPARK34_STAMP)
	@echo "Dumping the class-data archive of Spark 3.4's driver (once)"
	@CLINICAL_JARS_DIR="$(CURDIR)/$(JARS_SPARK34)" $(VENV_SPARK34)/bin/python -m clinical_platform.launchers.cds
	@touch $@

setup: $(STAMP) $(JARS_STAMP) $(CDS_STAMP)

demo: $(STAMP) $(JARS_STAMP) $(CDS_STAMP)
	@$(VENV)/bin/clinical-platform demo

ui: $(STAMP) $(JARS_STAMP) $(CDS_STAMP)
	@mkdir -p "$(DAGSTER_HOME)"
	@test -f "$(DAGSTER_HOME)/dagster.yaml" || printf 'telemetry:\n  enabled: false\n' > "$(DAGSTER_HOME)/dagster.yaml"
	@if [ -z "$$CLINICAL_PSEUDONYM_KEY" ]; then echo "The demo pseudonym key serves the generated study SYNTH01 only; set CLINICAL_PSEUDONYM_KEY for other studies."; fi
	CLINICAL_DEMO_PSEUDONYM_KEY="$${CLINICAL_DEMO_PSEUDONYM_KEY:-demo-key-not-for-real-data}" \
		$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Whole test modules spread over TEST_WORKERS processes (pytest-xdist), heaviest first
# (conftest.py): module fixtures stay shared, and while one worker waits on a Spark application
# or the browser the other runs. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: $(STAMP) $(JARS_STAMP) $(CDS_STAMP)
	$(VENV)/bin/pytest $(XDIST) --durations=25 $(PYTEST_ARGS)

test-fast: $(STAMP) $(JARS_STAMP) $(CDS_STAMP)
	$(VENV)/bin/pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

# The Spark jobs on EMR 6.15's Spark: the job tests and the pilot end to end (its hashes must
# equal those of any other PySpark's run left in .artifacts/, which make test writes).
test-emr-spark: $(SPARK34_STAMP) $(JARS_SPARK34_STAMP) $(CDS_SPARK34_STAMP)
	CLINICAL_JARS_DIR="$(CURDIR)/$(JARS_SPARK34)" CLINICAL_REQUIRE_SPARK_COMPARISON=1 \
		$(VENV_SPARK34)/bin/pytest -p no:cacheprovider $(XDIST) --durations=10 $(PYTEST_ARGS) \
		clinical_platform_tests/spark_jobs/ \
		clinical_platform_tests/clinical/test_pilot_end_to_end.py -k 'not rematerializ'

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pyright
	$(VENV)/bin/cfn-lint --regions eu-central-1 -- infra/cloudformation/platform.yaml

# The table is also written into docs/benchmarks.md; BENCH_ARGS=--quick for one pair each.
bench: $(STAMP) $(JARS_STAMP) $(CDS_STAMP)
	$(VENV)/bin/python benchmarks/bench.py --output docs/benchmarks.md $(BENCH_ARGS)

# Issue 15's scale runs; apart from bench, whose table must finish in 30 minutes.
bench-scale: $(STAMP) $(JARS_STAMP) $(CDS_STAMP)
	$(VENV)/bin/python benchmarks/bench_large_xpt.py $(BENCH_SCALE_ARGS)

bench-families: $(STAMP) $(JARS_STAMP) $(CDS_STAMP)
	$(VENV)/bin/python benchmarks/bench_families.py $(BENCH_FAMILIES_ARGS)

snapshot: $(STAMP)
	UPDATE_SNAPSHOTS=1 $(VENV)/bin/pytest -q clinical_platform_tests/test_definitions.py -k snapshot

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(VENV_SPARK34) $(TOOLS) $(JARS) $(JARS_SPARK34) .lake .dagster .demo .pytest_cache .ruff_cache
