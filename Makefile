# Customer Portal. `make run` serves the demo; `make test` runs the whole suite.
# Each target bootstraps its own .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: run test test-fast lint chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	touch $@

# The optional extras too: the tests run Sentry, OpenTelemetry, gunicorn and granian for real.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e ".[test,sentry,otel,servers]"
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/portal migrate --quiet
	$(BIN)/portal demo --if-empty
	$(BIN)/portal serve

# Playwright cannot download its browsers here: use the system Chromium.
chromium: $(VENV)/.installed-test
	@if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get install -y chromium; \
	else $(BIN)/python -m playwright install chromium; fi

# ruff; the layer contract and no import cycles (import-linter: [tool.importlinter] in
# pyproject.toml, explained in docs/architecture.md); mypy, strict, on src/portal.
lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests e2e bench
	$(BIN)/ruff format --check src tests e2e bench
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

# Test modules run in parallel on the machine's two cores (pytest-xdist), each module whole
# in one worker (its fixtures are made once); WORKERS=0 runs them in this process.
WORKERS ?= 2
PYTEST := $(BIN)/pytest -q -n $(WORKERS) --dist loadfile

# Python keeps compiled modules (__pycache__, ignored by git) even where the environment
# says not to (PYTHONDONTWRITEBYTECODE=1 here): the suite starts a few hundred `portal`
# processes, and each would compile the package again (~0.35 s of CPU a start).
test test-fast: export PYTHONDONTWRITEBYTECODE :=

# Everything: the server-side tests, the wheel test and the browser tests.
test: lint chromium
	$(PYTEST)

# The quick loop while changing code: no browser, no wheel build (tests/ without `slow`).
test-fast: lint
	$(PYTEST) -m "not slow" tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
