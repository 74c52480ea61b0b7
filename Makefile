# payflow's two entry points: `make serve` and `make test`. Both create .venv on first use.
# `make serve` installs the runtime dependencies only; `make test` (and `make install`) add the
# development tools. Both install exactly the versions pinned in requirements/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
RUNTIME := $(VENV)/.runtime-installed
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint install clean

$(RUNTIME): pyproject.toml requirements/runtime.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -c requirements/runtime.txt -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME) requirements/dev.txt
	$(PIP) -c requirements/dev.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

serve: $(RUNTIME)
	$(BIN)/payflow serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest --cov=payflow --cov-branch --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
