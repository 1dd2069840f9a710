# The two set-up commands: `make demo` (gateway + stub services) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench

$(BIN)/api-gateway: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

demo: $(BIN)/api-gateway
	$(BIN)/api-gateway demo

lint: $(BIN)/api-gateway
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src

test: lint
	$(BIN)/pytest -q

bench: $(BIN)/api-gateway
	$(BIN)/python bench/run.py
