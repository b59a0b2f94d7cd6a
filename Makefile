# notify-push-gateway: the commands the README promises.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint unit integration bench clean deploy-check bundle

install: $(STAMP)

# Re-installs only when pyproject.toml changed (idempotent).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[postgres,mysql,dev]'
	@touch $(STAMP)

run: install
	$(BIN)/python -m tests.support.devstack

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

unit: install
	$(BIN)/pytest -m 'not integration'

integration: install
	$(BIN)/pytest -m integration

# The Kubernetes manifests only: render, validate offline, check (also part of `make test`).
deploy-check: install
	$(BIN)/pytest tests/deploy -q

# The browser page's bundle, committed in tests/browser/dist so that `make run`
# and the tests need no Node.js: rebuild it after changing tests/browser/src or
# the lock file (npm ci installs exactly the locked packages).
bundle:
	npm ci --prefix tests/browser
	npm run --prefix tests/browser build

bench: install
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks.run all --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
