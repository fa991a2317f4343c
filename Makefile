# Two commands do everything on a machine that has only python3:
#   make run   - the monthly job for every month of 2022 on the bundled sample organization
#   make test  - the test suite
# and, for CI and before changing the scheduling: make test-server (billing serve against a real Prefect server).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= out
# Test processes (pytest-xdist): one per core by default.
TEST_WORKERS ?= auto
ORG    ?= sample/org.yaml

# Prefect: project-local home, no analytics, generous start-up time for the temporary server.
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export PREFECT_LOGGING_LEVEL ?= WARNING

.PHONY: run test test-server bench install sample clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

sample: $(STAMP)
	$(BIN)/python -m billing.sample.generate sample

run: $(STAMP)
	$(BIN)/billing validate --org $(ORG)
	$(BIN)/billing backfill --org $(ORG) --out $(OUT) --from 2022-01 --to 2022-12 --prefect --issue-date closing-day
	$(BIN)/billing report --org $(ORG) --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-server: $(STAMP)
	$(BIN)/python -m pytest -m server $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m benchmarks.ingest_bench

clean:
	rm -rf $(OUT) .prefect .pytest_cache billing.db
