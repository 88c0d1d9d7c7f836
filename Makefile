# Tollgate. `make up` runs a local gateway; `make test` is what CI runs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCKED := $(VENV)/.locked
LOCK := requirements.lock
PIP_VERSION := 26.3
PIP_TOOLS_VERSION := 7.7.0
LOCK_VENV := .venv-lock
CLAUDE := node_modules/.bin/claude
CLAUDE_VERSION ?= 2.1.197
PROTOS := $(wildcard proto/gwapi/v1/*.proto)

.PHONY: install lock runtime-lock up up-signin down status test lint typecheck unit proto proto-check bench bench-workers bench-replicas bench-fleet bench-ledger bench-ledger-upgrade bench-streams bench-sweep bench-soak bench-instructions bench-perfdiff clean migration

install: $(STAMP) $(CLAUDE)

# Installs are reproducible: every package, dev tools and setuptools included, comes from
# requirements.lock at the exact version and with the hashes recorded there (a changed file on the
# registry fails the install). The lock is made by pip-tools rather than uv because pip-tools runs
# on pip itself: it honours this machine's pip configuration (CA bundle, local wheel directories,
# constraints) and writes a plain requirements file with no index addresses in it, which any pip
# installs; uv reads none of pip's settings and records each package's index address in uv.lock.
# A changed lock rebuilds the venv from nothing, so nothing outside the lock lingers in it.
$(LOCKED): $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	@touch $(LOCKED)

# The project itself, editable, without resolving anything (its dependencies are the lock's) and
# built with the locked setuptools. `pip check` fails when pyproject.toml asks for something the
# lock does not satisfy: then run `make lock`.
$(STAMP): $(LOCKED) pyproject.toml
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@$(BIN)/python -m pip check || { echo "$(LOCK) does not satisfy pyproject.toml: run make lock"; exit 1; }
	@touch $(STAMP)

# Regenerates requirements.lock from pyproject.toml (dependencies + the dev extra), keeping every
# pin that still fits; `make lock LOCK_ARGS=--upgrade` moves everything to the newest allowed,
# `LOCK_ARGS='--upgrade-package textual'` one package. It resolves for the interpreter it runs on,
# so it refuses anything but the CI machine's: CPython 3.11 on Linux x86_64.
$(LOCK_VENV)/.pip-tools-$(PIP_TOOLS_VERSION):
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet pip==$(PIP_VERSION) pip-tools==$(PIP_TOOLS_VERSION)
	@touch $@

lock: $(LOCK_VENV)/.pip-tools-$(PIP_TOOLS_VERSION)
	@$(LOCK_VENV)/bin/python -c 'import platform as p, sys; \
	  sys.exit(None if (p.python_implementation(), sys.version_info[:2], sys.platform, p.machine()) \
	    == ("CPython", (3, 11), "linux", "x86_64") else "make lock needs CPython 3.11 on Linux x86_64")'
	@cp $(LOCK) $(LOCK).new 2>/dev/null || true
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes \
	  --allow-unsafe --strip-extras --extra dev --no-emit-index-url --no-emit-trusted-host \
	  --no-emit-find-links $(LOCK_ARGS) --output-file $(LOCK).new pyproject.toml \
	  || { rm -f $(LOCK).new; exit 1; }
	@# Replaced only when it changed: a newer lock makes the next `make install` rebuild .venv.
	@if cmp -s $(LOCK).new $(LOCK); then rm $(LOCK).new; echo "$(LOCK) unchanged"; \
	else mv $(LOCK).new $(LOCK); echo "$(LOCK) updated: make install rebuilds .venv from it"; fi

# deploy/requirements-runtime.lock: requirements.lock's entries for the runtime dependencies only
# (pins and hashes verbatim), which the container image installs. Run after `make lock`; a test
# (tests/deploy/test_image.py) fails while it is stale.
runtime-lock: $(STAMP)
	$(BIN)/python -m deploy.runtime_lock

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

# A schema change: after editing controlplane/store/models.py, `make migration NAME=add_foo`
# autogenerates controlplane/store/migrations/versions/NNNN_add_foo.py against a scratch SQLite
# database at head. Review it by hand (see the migrations package docstring), then run
# tests/controlplane/store/test_migrations.py.
migration: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make migration NAME=add_something"; exit 2; }
	$(BIN)/python -m controlplane.store.migrations.dev $(NAME)

lint: $(STAMP) proto-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(MAKE) typecheck

# All of tests/ is checked too (the one fake admin client against the real client's protocol
# above all), under the looser rules pyproject.toml gives tests.*.
typecheck: $(STAMP)
	$(BIN)/mypy gwcommon gwclient dataplane controlplane tui gwctl tests

unit: install
	$(BIN)/python -m pytest -q

test: install lint unit

# The data plane against a direct call (same run), then the limits engine (in-process and Redis),
# then authentication (a virtual key against a signed-in developer's token).
# The ledger at a year of traffic (PostgreSQL): LEDGER_EVENTS=300000 for a quick run.
bench-ledger: install
	$(BIN)/python -m bench.ledger --events $${LEDGER_EVENTS:-30000000} --pg $${TOLLGATE_BENCH_PG:-postgresql://postgres@127.0.0.1:5432/test}

# Upgrading a database from before the ledger: migration, start, background fill (PostgreSQL).
bench-ledger-upgrade: install
	$(BIN)/python -m bench.ledger_upgrade --events $${LEDGER_UPGRADE_EVENTS:-1000000} --pg $${TOLLGATE_BENCH_PG:-postgresql://postgres@127.0.0.1:5432/test}

bench: install
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.limits --redis $${TOLLGATE_BENCH_REDIS:-redis://127.0.0.1:6379/0}
	$(BIN)/python -m bench.auth

# --workers 1 against --workers 2 on the Claude-Code-shaped stream (needs the local Redis).
bench-workers: install
	TOLLGATE_BENCH_REDIS=$${TOLLGATE_BENCH_REDIS:-redis://127.0.0.1:6379/0} $(BIN)/python -m bench.workers

# Two control-plane replicas on PostgreSQL, two data planes on Redis connected to replica A:
# revocation through replica B, and control-plane CPU per 1,000 req/s of ingest. The fleet's
# size: TOLLGATE_BENCH_KEYS (acceptance figure at 20000).
bench-replicas: install
	$(BIN)/python -m bench.replicas --keys $${TOLLGATE_BENCH_KEYS:-1000} \
		--pg $${TOLLGATE_BENCH_PG:-postgresql://postgres@127.0.0.1:5432/test} \
		--redis $${TOLLGATE_BENCH_REDIS:-redis://127.0.0.1:6379/0}

# Fleet scale (issue #16): gwctl apply of 5,000 / 20,000 keys on PostgreSQL, two data planes.
bench-fleet: install
	$(BIN)/python -m bench.fleet_apply --keys $${TOLLGATE_BENCH_KEYS:-20000}

# Many open streams (issue #14): 100 / 250 / 1,000 concurrent streams, a token every 20 ms for
# 10 s, through one data plane and directly; RSS, per-token delay, event-loop lag, ledger.
bench-streams: install
	$(BIN)/python -m bench.streams --sizes $${TOLLGATE_BENCH_STREAMS:-100,250,1000}

# Paced concurrency sweep (issue #14): answers generated over ~0.5 s, 1 / 64 / 256 / 1,000 streams
# kept open, time to last byte through one data plane and directly, added p50/p99, and through
# bench.bare_relay (the same process shell with no gateway: the frameworks' floor) (~7 minutes).
bench-sweep: install
	$(BIN)/python -m bench.sweep --floor --levels $${TOLLGATE_BENCH_LEVELS:-1,64,256,1000}

# Memory over time (issue #14): Claude Code requests at a steady open-loop rate (answers paced
# over ~0.5 s) through one data plane for TOLLGATE_SOAK_MINUTES; RSS at the start, minute 5, the
# middle and the end, tracemalloc's growing allocation sites, the ledger (~21 minutes; a short
# run: TOLLGATE_SOAK_MINUTES=3 TOLLGATE_SOAK_BASELINE_MIN=1). TOLLGATE_SOAK_TRACEMALLOC=0: RSS
# without tracemalloc's overhead (about twice the data plane's CPU), and no snapshots.
bench-soak: install
	$(BIN)/python -m bench.soak --minutes $${TOLLGATE_SOAK_MINUTES:-20} --rate $${TOLLGATE_SOAK_RATE:-50} \
		--baseline-min $${TOLLGATE_SOAK_BASELINE_MIN:-5} \
		--tracemalloc-frames $${TOLLGATE_SOAK_TRACEMALLOC:-1}

# The data plane's instructions per request under callgrind (python -m bench.instructions): two
# processes (100 and 400 requests), measured twice; a figure that repeats on a busy machine, for
# comparing commits (~10 minutes; needs valgrind).
bench-instructions: install
	$(BIN)/python -m bench.instructions --repeat 2

# Where the data plane's CPU goes beyond the frameworks' floor (python -m bench.perfdiff): the
# data plane and bench.bare_relay under the same closed loop, each under perf record; µs per
# request by C function, shared object and thread, data plane minus floor (~1 minute; needs perf).
bench-perfdiff: install
	$(BIN)/python -m bench.perfdiff

clean:
	rm -rf $(VENV) $(LOCK_VENV) node_modules .mypy_cache .ruff_cache .pytest_cache
