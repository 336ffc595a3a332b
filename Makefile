# Quick start: `make demo` (train + evaluate + transcribe on FSDD), `make test` (the test suite).
# Each installs what it needs into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FSDD_LOCAL := ../shared/data/free-spoken-digit-dataset-1.0.10
DEMO_DIR ?= exp/fsdd-demo

.PHONY: install demo test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $@

# FSDD from ../shared when it is there, otherwise downloaded (v1.0.10 release archive).
demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash recipes/fsdd/run.sh --exp-dir $(DEMO_DIR) \
		$(if $(wildcard $(FSDD_LOCAL)/recordings),--source $(FSDD_LOCAL),)

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) exp
