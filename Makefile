# Quiver: `make run` starts the service, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
FUZZ_EXAMPLES ?= 200
CONSISTENCY_SECONDS ?= 300
export FLASK_APP := wsgi

.PHONY: install run account migrate test test-sqlite test-postgres lint screenshots bench bench-core soak check-consistency check-consistency-bounded fuzz clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	$(BIN)/flask db upgrade

run: migrate
	@$(BIN)/python -m api.devserver --port $(PORT)

# An account and its first admin key: make account NAME="Acme"
account: migrate
	@test -n "$(NAME)" || { echo 'Name the account: make account NAME="Acme"' >&2; exit 2; }
	@$(BIN)/flask create-account "$(NAME)"

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres
	$(MAKE) --no-print-directory check-consistency-bounded

test-sqlite: install
	env -u TEST_DATABASE_URL $(BIN)/pytest

test-postgres: install
	@URL=$$($(BIN)/python -m tests.backends); \
	if [ -n "$$URL" ]; then \
		echo "PostgreSQL at $$URL: running the suite against it"; \
		TEST_DATABASE_URL="$$URL" $(BIN)/pytest; \
	else \
		echo "No PostgreSQL reachable (set TEST_DATABASE_URL): skipped the PostgreSQL run"; \
	fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The operator console's screenshots (tests/screenshots/console/, shown in the README), taken by its tests.
screenshots: install
	CONSOLE_SCREENSHOTS=1 env -u TEST_DATABASE_URL $(BIN)/pytest tests/test_console.py

bench: migrate
	$(BIN)/python -m bench

bench-core: migrate
	$(BIN)/python -m bench core

soak: install
	$(BIN)/python -m bench.soak
	$(MAKE) --no-print-directory check-consistency

# Concurrent single, bulk, batch, GraphQL and import writes on a few shared records (two servers and
# a worker on PostgreSQL), then checks ETags, If-Match, the event log against the rows, and SSE
# streams and an events poller against the log. Exits non-zero on any violation.
check-consistency: install
	CONSISTENCY_SECONDS=$(CONSISTENCY_SECONDS) $(BIN)/python -m bench.consistency

# The same for 60 s, in `make test`, whenever a PostgreSQL answers.
check-consistency-bounded: install
	@URL=$$($(BIN)/python -m tests.backends); \
	if [ -n "$$URL" ]; then \
		TEST_DATABASE_URL="$$URL" CONSISTENCY_SECONDS=60 $(BIN)/python -m bench.consistency; \
	else \
		echo "No PostgreSQL reachable (set TEST_DATABASE_URL): skipped the consistency check"; \
	fi

# schemathesis over every operation of the OpenAPI document, against a real gunicorn on
# PostgreSQL when one answers (else SQLite): every phase, FUZZ_EXAMPLES cases per operation.
fuzz: install
	@URL=$$($(BIN)/python -m tests.backends); \
	echo "Fuzzing against $${URL:-SQLite}"; \
	TEST_DATABASE_URL="$$URL" $(BIN)/python -m tests.conformance --max-examples $(FUZZ_EXAMPLES) \
		--workers 2 --phases examples,coverage,fuzzing,stateful

clean:
	rm -rf $(VENV) var .pytest_cache
