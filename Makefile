# The one entry point for people, CI and hooks.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=

.PHONY: help install run test test-fast fuzz lint fmt bench migrate firmware-test clean dashboard

help:
	@echo "make run    - the whole system on this machine (broker, workers, API, dashboard, 20 simulated devices)"
	@echo "make test   - the whole test suite against real MariaDB, NATS, Mosquitto and Redis"
	@echo "make fuzz   - the property tests (hypothesis, schemathesis) long and random; make test runs them derandomized"
	@echo "make lint   - ruff and mypy"
	@echo "make dashboard - npm ci and build the web dashboard into the API's static files"
	@echo "make bench  - throughput and latency benchmarks (not part of make test)"

install:
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --all-packages
	@$(MAKE) --no-print-directory dashboard

# The web dashboard (Vue + Vite), built into the directory the API serves at / (not committed).
dashboard:
	cd dashboard && npm ci --no-audit --no-fund --loglevel=error
	cd dashboard && npm run build

run: install
	$(UV) run powerflow up

migrate: install
	$(UV) run powerflow migrate

test: install
	$(UV) run pytest $(PYTEST_ARGS)
	cd dashboard && npm test
	@if [ -f firmware/Makefile ]; then $(MAKE) --no-print-directory -C firmware test; fi

test-fast: install
	$(UV) run pytest -m "not slow" $(PYTEST_ARGS)

# Property tests only, with random examples and many of them (FUZZ_EXAMPLES per test, the
# schema test an eighth of that per operation), each allowed an hour instead of the usual
# 3 minutes. make test runs the same tests derandomized.
FUZZ_EXAMPLES ?= 2000
fuzz: install
	POWERFLOW_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(UV) run pytest -m hypothesis \
		--hypothesis-profile=fuzz --timeout=3600 -p no:cacheprovider $(PYTEST_ARGS)

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

fmt: install
	$(UV) run ruff check --fix .
	$(UV) run ruff format .

bench: install
	$(UV) run python bench/msgids.py
	$(UV) run python bench/pipeline.py
	$(UV) run python bench/reporter_facts.py
	$(UV) run python bench/store_backends.py
	$(UV) run python bench/queries.py

firmware-test:
	$(MAKE) -C firmware test

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache firmware/build
	rm -rf dashboard/node_modules services/api/src/powerflow_api/static
