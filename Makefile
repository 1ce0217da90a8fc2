# Patchbay: `make run` starts the console with a demo fleet; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run cluster chaos test test-js test-main test-gevent test-postgres lint audit bench bench-full clean venv venv-dev a11y-deps

$(VENV)/.runtime-installed: requirements.txt pyproject.toml
	@scripts/system-deps.sh run
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -r requirements.txt
	$(PIP) install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt $(VENV)/.runtime-installed
	$(PIP) install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.runtime-installed
venv-dev: $(VENV)/.dev-installed

## axe-core for the browser tests' accessibility checks, at the version
## tests/a11y/package-lock.json pins (npm ci: exactly the lock, nothing newer).
A11Y := tests/a11y
$(A11Y)/node_modules/.installed: $(A11Y)/package.json $(A11Y)/package-lock.json
	cd $(A11Y) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

a11y-deps: $(A11Y)/node_modules/.installed

## Set up everything and run the console on http://127.0.0.1:$${PATCHBAY_PORT:-5000}
## with a demo fleet of 8 local SSH game servers.
run: venv
	@PYTHON=$(PY) scripts/run-demo.sh

## The same with several nodes, as deployed: PostgreSQL, Redis, two console nodes behind
## nginx on http://127.0.0.1:$${PATCHBAY_PORT:-5000}, the demo fleet; data in .cluster/
## (PATCHBAY_CLUSTER_DIR).
cluster: venv
	@scripts/system-deps.sh cluster
	$(PY) -m stack.cluster

## Rollouts on the same parts (in a temporary folder, with a real OpenSSH fleet of 16
## servers) for CHAOS_SECONDS (600) while nodes, SSH sessions, Redis, PostgreSQL, nginx
## and watchers fail at times drawn from CHAOS_SEED (printed); one summary line, and a
## non-zero exit on any loss. Leaves nothing running.
chaos: venv
	@scripts/system-deps.sh chaos
	$(PY) -m stack.chaos

## Set up everything and run the whole test suite, and at the same time the
## async-mode-agnostic part again under gevent and the engine and Socket.IO part again
## on PostgreSQL (the three passes mostly wait on servers, so they share the cores well;
## each one's output is printed when it ends). pytest's exit code 5 (no tests ran)
## fails the build.
test:
	@scripts/system-deps.sh test
	@$(MAKE) --no-print-directory venv-dev a11y-deps
	$(VENV)/bin/ruff check .
	@$(MAKE) --no-print-directory test-js
	@$(MAKE) --no-print-directory -j3 --output-sync=target test-main test-gevent test-postgres

## The pages' pure modules (the job page's reducer, its event store, ...) in Node's own
## test runner: no browser, no DOM (tests/js/).
test-js:
	node --test tests/js/*.test.mjs

## The main pass on PYTEST_WORKERS workers (pytest-xdist), a test module per worker at a
## time so module fixtures (a demo fleet, a console) stay whole; 0 runs it in one process.
PYTEST_WORKERS ?= 2
test-main: venv-dev
	$(PY) -m pytest -p no:cacheprovider --durations=15 -n $(PYTEST_WORKERS) --dist loadfile

test-gevent: venv-dev
	PATCHBAY_ASYNC_MODE=gevent $(PY) -m pytest -p no:cacheprovider -m asyncmode

## The tests marked postgres, each on a fresh database of a private PostgreSQL server
## (stack/postgres.py) started for the run.
test-postgres: venv-dev
	$(PY) -m stack.postgres run -- $(PY) -m pytest -p no:cacheprovider -m postgres

$(VENV)/.bench-installed: requirements-bench.txt $(VENV)/.dev-installed
	$(PIP) install --quiet --disable-pip-version-check -r requirements-bench.txt
	@touch $@

## Benchmarks against Fabric, parallel-ssh and ThreadingGroup on a local OpenSSH fleet,
## and the job page in Chromium (docs/benchmarks.md). bench: quick mode, under 5 minutes
## on 2 cores; writes bench/results/quick.json, prints its tables and compares them with
## the published full run. bench-full: every size; writes bench/results/full.json and
## publishes it: docs/benchmarks.md's figures, its plots and docs/benchmarks/full.json.
bench:
	@scripts/system-deps.sh test
	@$(MAKE) --no-print-directory $(VENV)/.bench-installed
	$(PY) -m bench

bench-full:
	@scripts/system-deps.sh test
	@$(MAKE) --no-print-directory $(VENV)/.bench-installed
	$(PY) -m bench --full

## ruff, then pip-audit against the pinned requirements (a plain note where the advisory
## data cannot be reached; any known vulnerability fails).
lint: venv-dev audit
	$(VENV)/bin/ruff check .

AUDIT_VENV ?= $(VENV)/audit
$(AUDIT_VENV)/.installed: requirements-audit.txt
	@test -x $(AUDIT_VENV)/bin/python || $(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-audit.txt
	@touch $@

audit: $(AUDIT_VENV)/.installed
	$(AUDIT_VENV)/bin/python scripts/audit-deps.py $(AUDIT_VENV)/bin/pip-audit

clean:
	rm -rf $(VENV) $(AUDIT_VENV) .demo .cluster instance patchbay.egg-info $(A11Y)/node_modules
