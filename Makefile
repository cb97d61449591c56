# Everything runs from the project's own virtualenv; `make run` and `make test` create it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint format e2e e2e-deps demo demo-deps eval bench mutate clean

$(BIN)/alert-enricher: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "alert-enricher needs python3 >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV) \
	  || { echo "python3 -m venv failed: on Debian/Ubuntu, apt-get install python3-venv"; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.dev: $(BIN)/alert-enricher
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

run: $(BIN)/alert-enricher
	$(BIN)/alert-enricher serve

test: $(VENV)/.dev
	$(BIN)/pytest -q -m "not e2e"

# PostgreSQL's server programs where tests/pgserver.py looks for them: all three on PATH, else
# together in one /usr/lib/postgresql/*/bin (Debian's `postgresql` package; not on PATH there).
PG_SERVER_FOUND = ( { command -v initdb && command -v pg_ctl && command -v postgres; } >/dev/null \
	&& exit 0; \
	for bin in /usr/lib/postgresql/*/bin; do \
	  [ -x "$$bin/initdb" ] && [ -x "$$bin/pg_ctl" ] && [ -x "$$bin/postgres" ] && exit 0; \
	done; exit 1 )

# End-to-end: real Prometheus and Alertmanager (Debian packages, installed when missing).
# iproute2: the protected-mode test posts from a network namespace of its own.
# postgresql: throwaway servers for the PostgreSQL store's tests, unit and end-to-end.
# docker-compose: `docker-compose config` validates deploy/docker-compose.yml in `make test` (no
# engine needed). .ci/run installs these before `make test`.
e2e-deps:
	@if ! command -v prometheus >/dev/null || ! command -v prometheus-alertmanager >/dev/null \
	    || ! command -v ip >/dev/null || ! command -v docker-compose >/dev/null \
	    || ! $(PG_SERVER_FOUND); then \
	  echo "installing prometheus, prometheus-alertmanager, iproute2, postgresql and docker-compose (Debian packages)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-alertmanager iproute2 postgresql docker-compose >/dev/null; \
	fi

# `make demo`: the deploy kit's stack on loopback without Docker (README, "make demo").
demo-deps:
	@if ! command -v prometheus >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then \
	  echo "installing prometheus and prometheus-alertmanager (Debian packages)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-alertmanager >/dev/null; \
	fi

demo: $(BIN)/alert-enricher demo-deps
	$(BIN)/python -m demo $(DEMO_ARGS)

# The labelled incidents of evals/incidents.yml through the diagnosis: rules, or the LLM with a key.
eval: $(BIN)/alert-enricher
	$(BIN)/python -m evals $(EVAL_ARGS)

e2e: $(VENV)/.dev e2e-deps
	$(BIN)/pytest -q -m e2e tests/e2e

lint: $(VENV)/.dev
	$(BIN)/ruff check app tests bench demo evals
	$(BIN)/ruff format --check app tests bench demo evals
	$(BIN)/mypy

format: $(VENV)/.dev
	$(BIN)/ruff check --fix app tests bench demo evals
	$(BIN)/ruff format app tests bench demo evals

bench: $(VENV)/.dev
	$(BIN)/python -m bench $(BENCH_ARGS)

# Mutation testing of the page-critical modules (tests/mutate.py); the kill rate per module.
# MUTATE_ARGS: --changed-since REV (only modules changed since REV), --report, --strict.
mutate: $(VENV)/.dev
	$(BIN)/python -m tests.mutate $(MUTATE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache mutants
