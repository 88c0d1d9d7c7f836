# Tollgate. `make up` runs a local gateway; `make test` is what CI runs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CLAUDE := node_modules/.bin/claude
CLAUDE_VERSION ?= 2.1.197
PROTOS := $(wildcard proto/gwapi/v1/*.proto)

.PHONY: install up up-signin down status test lint typecheck unit proto proto-check bench clean

install: $(STAMP) $(CLAUDE)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The real Claude Code CLI, for the end-to-end tests (no lock file: nothing pins a registry host).
$(CLAUDE):
	npm install --no-save --no-package-lock --no-audit --no-fund @anthropic-ai/claude-code@$(CLAUDE_VERSION) >/dev/null

up: $(STAMP)
	$(BIN)/gwctl up

# `make up` plus the development identity provider (NOT for production) and sign-in against it:
# prints how to point Claude Code's /login at the local gateway.
up-signin: $(STAMP)
	$(BIN)/gwctl up --dev-idp

down: $(STAMP)
	$(BIN)/gwctl down

status: $(STAMP)
	$(BIN)/gwctl up --status

proto: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -Iproto \
	  --python_out=. --mypy_out=. --grpc_python_out=. --mypy_grpc_out=. $(PROTOS)

# Regenerates into a scratch tree and fails when the committed stubs differ.
proto-check: $(STAMP)
	@tmp=$$(mktemp -d); \
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m grpc_tools.protoc -Iproto --python_out=$$tmp --mypy_out=$$tmp \
	  --grpc_python_out=$$tmp --mypy_grpc_out=$$tmp $(PROTOS) && \
	for f in $$(cd $$tmp && find gwapi -type f); do \
	  cmp -s $$tmp/$$f $$f || { echo "generated $$f is stale: run make proto"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "proto stubs up to date"

lint: $(STAMP) proto-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(MAKE) typecheck

typecheck: $(STAMP)
	$(BIN)/mypy gwcommon dataplane controlplane tui gwctl

unit: install
	$(BIN)/python -m pytest -q

test: install lint unit

# The data plane against a direct call (same run), then the limits engine (in-process and Redis),
# then authentication (a virtual key against a signed-in developer's token).
bench: install
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.limits --redis $${TOLLGATE_BENCH_REDIS:-redis://127.0.0.1:6379/0}
	$(BIN)/python -m bench.auth

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
