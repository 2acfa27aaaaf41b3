# leadwire: the one entry point for people, the README and CI.
#
#   make run     the whole system in the foreground (infra, migrations, services, demo)
#   make up      the same in the background; writes .leadwire/stack.env
#   make down    stop everything `make up` started
#   make test    every test tier against real Kafka, Postgres and S3
#   make bench   benchmarks (figures printed, not asserted)
#   make soak    the system under load and faults (KAFKA_BROKERS=3: on a three-broker cluster)
#   make lint    ruff + mypy;   make fmt   format

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: help install infra browser wrk run up down status test test-unit test-integration test-e2e bench soak lint fmt clean

help:
	@sed -n 's/^#   //p' Makefile

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

# Kafka jars, the S3 server and Postgres, built or installed once (cached under ~/.cache).
infra: install
	$(PY) -m infra install

# Debian's headless Chromium, for the analytics dashboard test (installed when root).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium missing and not root: the dashboard browser test will say it is skipped"; }

# wrk, the load tool of make bench's gateway table (installed when root; without it the
# benchmark drives the servers with its own generator and says so).
wrk:
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) || echo "wrk missing and not root: make bench uses bench.httpload instead"; }

run: infra
	$(PY) -m infra.launch run

up: infra
	$(PY) -m infra.launch up

down:
	@if [ -x $(PY) ]; then $(PY) -m infra.launch down; fi

status: install
	$(PY) -m infra.launch status

test: infra browser
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

test-integration: infra
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

test-e2e: infra browser
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

bench: infra wrk
	$(PY) -m bench

soak: infra
	$(PY) -m bench.soak $(if $(SOAK_SECONDS),--seconds $(SOAK_SECONDS),) $(if $(KAFKA_BROKERS),--brokers $(KAFKA_BROKERS),)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared services cli infra bench

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: down
	rm -rf .leadwire
