# Quiver: `make run` starts the service, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
FUZZ_EXAMPLES ?= 200
export FLASK_APP := wsgi

.PHONY: install run migrate test test-sqlite test-postgres lint bench bench-core soak fuzz clean

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
	@$(BIN)/flask dev-key > var/dev-key.txt
	@KEY=$$(sed -n 's/^key: //p' var/dev-key.txt); rm -f var/dev-key.txt; \
	echo ""; \
	echo "  Quiver is starting on http://127.0.0.1:$(PORT)"; \
	echo "  Admin key (shown once): $$KEY"; \
	echo ""; \
	echo "  curl -s http://127.0.0.1:$(PORT)/api/v1/tasks -H 'Authorization: Bearer '$$KEY"; \
	echo "  curl -s -X POST http://127.0.0.1:$(PORT)/api/v1/tasks -H 'Authorization: Bearer '$$KEY \\"; \
	echo "       -H 'Content-Type: application/json' -d '{\"title\": \"Hello\"}'"; \
	echo "  API docs: http://127.0.0.1:$(PORT)/api/v1/docs"; \
	echo ""
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start --port $(PORT) web worker

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

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

bench: migrate
	$(BIN)/python -m bench

bench-core: migrate
	$(BIN)/python -m bench core

soak: install
	$(BIN)/python -m bench.soak

# schemathesis over every operation of the OpenAPI document, against a real gunicorn on
# PostgreSQL when one answers (else SQLite): every phase, FUZZ_EXAMPLES cases per operation.
fuzz: install
	@URL=$$($(BIN)/python -m tests.backends); \
	echo "Fuzzing against $${URL:-SQLite}"; \
	TEST_DATABASE_URL="$$URL" $(BIN)/python -m tests.conformance --max-examples $(FUZZ_EXAMPLES) \
		--workers 2 --phases examples,coverage,fuzzing,stateful

clean:
	rm -rf $(VENV) var .pytest_cache
