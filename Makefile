# calsync: every target builds what it needs (.venv, database, schema) by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export CALSYNC_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/calsync
export CALSYNC_REDIS_URL ?= redis://127.0.0.1:6379/0
TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/calsync_test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/9

.PHONY: help venv db demo test test-slow test-tooling lint bench bench-quick soak flower up down lock clean console console-assets browser

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.lock -r requirements-dev.lock
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e '.[simulator]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv with the pinned dependencies

db: $(STAMP) ## create the database named by CALSYNC_DATABASE_URL and migrate it
	$(BIN)/calsync db create
	$(BIN)/calsync db upgrade

demo: $(STAMP) ## run the main job end to end on the built-in Exchange simulator (own database calsync_demo)
	$(BIN)/python -m calsync.demo

test: $(STAMP) console-assets browser ## run the test suite against local Postgres and Redis
	@command -v docker-compose >/dev/null || { [ "$$(id -u)" = 0 ] && echo "make test: docker-compose is missing; installing it now with apt-get install docker-compose (tests/compose validates docker/compose.yaml with it; install it yourself beforehand to avoid this)" >&2 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; } || echo "make test: docker-compose is missing and cannot be installed here; tests/compose will fail (apt-get install docker-compose)" >&2
	CALSYNC_DATABASE_URL=$(TEST_DATABASE_URL) CALSYNC_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/calsync db create
	CALSYNC_DATABASE_URL=$(TEST_DATABASE_URL) CALSYNC_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/calsync db upgrade
	CALSYNC_DATABASE_URL=$(TEST_DATABASE_URL) CALSYNC_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/pytest -m "not tooling and not slow" $(PYTEST_ARGS)

test-slow: $(STAMP) ## the long-running tests make test leaves out (restarts, kill -9 mid-batch, a 10,000-item mailbox, 100k-row import)
	CALSYNC_DATABASE_URL=$(TEST_DATABASE_URL) CALSYNC_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/calsync db create
	CALSYNC_DATABASE_URL=$(TEST_DATABASE_URL) CALSYNC_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/calsync db upgrade
	CALSYNC_DATABASE_URL=$(TEST_DATABASE_URL) CALSYNC_REDIS_URL=$(TEST_REDIS_URL) $(BIN)/pytest -m slow $(PYTEST_ARGS)

test-tooling: $(STAMP) ## the tests of the developer tooling (make lock re-resolving both lock files; a few minutes)
	$(BIN)/pytest -m tooling $(PYTEST_ARGS)

lint: $(STAMP) ## ruff, mypy and the import contracts (import-linter)
	$(BIN)/ruff check calsync tests bench testkit soak
	$(BIN)/ruff format --check calsync tests bench testkit soak
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP) ## all benchmarks (20 minutes or more on 2 cores: the push scenario alone takes 11 on a fast one); results in bench/results/
	$(BIN)/python -m bench.run

bench-quick: $(STAMP) ## the benchmarks at small sizes (under a minute)
	$(BIN)/python -m bench.run --quick

SOAK_MINUTES ?= 30
soak: $(STAMP) ## calsync under random faults while users edit (SOAK_MINUTES, default 30); report in soak/results/
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/python -m soak

flower: $(STAMP) ## Flower on http://127.0.0.1:5555 (basic auth from CALSYNC_FLOWER_BASIC_AUTH, default admin:admin)
	$(BIN)/celery -A calsync flower --address=127.0.0.1 --port=5555 --basic-auth=$${CALSYNC_FLOWER_BASIC_AUTH:-admin:admin}

# More workers: docker compose -f docker/compose.yaml up -d --scale worker=4 (see docs/operations.md).
up: calsync/console/static/vendor/chart.umd.min.js ## the whole stack in Docker (needs a Docker engine)
	docker compose -f docker/compose.yaml up -d --build

down: ## stop the Docker stack
	docker compose -f docker/compose.yaml down

# Keeps today's pins where they still fit (drops what nothing needs, adds what is new);
# `make lock UPGRADE=1` resolves everything afresh to the newest versions.
LOCK_PINS = $(if $(UPGRADE),,-c requirements.lock -c requirements-dev.lock)
lock: ## re-resolve requirements.in and requirements-dev.in into both lock files (UPGRADE=1: newest)
	@set -euo pipefail; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; pip="$$tmp/venv/bin/pip --disable-pip-version-check -q"; \
	$$pip install $(LOCK_PINS) -r requirements.in; \
	{ echo "# Pinned runtime dependency tree; regenerate with \`make lock\`."; $$tmp/venv/bin/pip freeze; } > "$$tmp/run"; \
	$$pip install $(LOCK_PINS) -c "$$tmp/run" -r requirements-dev.in; \
	{ echo "# Pinned development and test tools (on top of requirements.lock); regenerate with \`make lock\`."; \
	  $$tmp/venv/bin/pip freeze | grep -vxFf "$$tmp/run"; } > "$$tmp/dev"; \
	mv "$$tmp/run" requirements.lock; mv "$$tmp/dev" requirements-dev.lock

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# --- admin console (issue 18) ---
# chart.js (the console's charts) and axe-core (the browser tests' accessibility checker) are
# fetched from the npm registry at build time with `npm pack` (integrity checked by npm), not
# committed; the console works offline once built.
CHARTJS_VERSION := 4.5.1
AXE_VERSION := 4.11.0
CONSOLE_VENDOR := calsync/console/static/vendor
CONSOLE_TEST_VENDOR := tests/console/.vendor

$(CONSOLE_VENDOR)/chart.umd.min.js:
	@command -v npm >/dev/null || { echo "make: npm is needed once to fetch chart.js $(CHARTJS_VERSION) (apt-get install npm)" >&2; exit 1; }
	@tmp=$$(mktemp -d) && (cd $$tmp && npm pack --silent chart.js@$(CHARTJS_VERSION) >/dev/null \
	  && tar xzf chart.js-$(CHARTJS_VERSION).tgz package/dist/chart.umd.min.js package/LICENSE.md) \
	  && mkdir -p $(CONSOLE_VENDOR) && cp $$tmp/package/LICENSE.md $(CONSOLE_VENDOR)/chart.js-LICENSE.md \
	  && cp $$tmp/package/dist/chart.umd.min.js $@ && rm -rf $$tmp && echo "fetched chart.js $(CHARTJS_VERSION) into $(CONSOLE_VENDOR)"

$(CONSOLE_TEST_VENDOR)/axe.min.js:
	@command -v npm >/dev/null || { echo "make: npm is needed once to fetch axe-core $(AXE_VERSION) (apt-get install npm)" >&2; exit 1; }
	@tmp=$$(mktemp -d) && (cd $$tmp && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null \
	  && tar xzf axe-core-$(AXE_VERSION).tgz package/axe.min.js) \
	  && mkdir -p $(CONSOLE_TEST_VENDOR) && cp $$tmp/package/axe.min.js $@ && rm -rf $$tmp \
	  && echo "fetched axe-core $(AXE_VERSION) into $(CONSOLE_TEST_VENDOR)"

console-assets: $(CONSOLE_VENDOR)/chart.umd.min.js $(CONSOLE_TEST_VENDOR)/axe.min.js ## fetch chart.js and axe-core from npm

browser: ## install Debian's chromium and chromium-driver for the console's browser tests, where missing
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo "make: installing chromium and chromium-driver (apt-get) for the console's browser tests (tests/console)"; \
	  { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	  || echo "make: cannot install chromium here; tests/console will be skipped (apt-get install chromium chromium-driver)" >&2; \
	fi

console: $(STAMP) $(CONSOLE_VENDOR)/chart.umd.min.js ## the admin console on http://127.0.0.1:8000 against the demo database (run `make demo` first)
	@if [ -z "$$CALSYNC_CONSOLE_ADMINS$$CALSYNC_CONSOLE_ADMINS_FILE" ]; then \
	  echo "make console: no CALSYNC_CONSOLE_ADMINS(_FILE); log in as admin / calsync-demo (docker/secrets/console_admins.demo)" >&2; \
	  export CALSYNC_CONSOLE_ADMINS_FILE=docker/secrets/console_admins.demo; fi; \
	CALSYNC_DATABASE_URL=$${CALSYNC_DEMO_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/calsync_demo} \
	  $(BIN)/calsync console serve --port $${CONSOLE_PORT:-8000}
