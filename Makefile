# The two set-up commands: `make demo` (gateway + stub services) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The request path compiled with mypyc; rebuilt whenever any source changes (see tools/compile.py).
COMPILED := src/api_gateway/_compiled/manifest.json
SOURCES := $(shell find src/api_gateway -name '*.py' -not -path '*/_compiled/*')

.PHONY: demo test lint bench compiled

$(BIN)/api-gateway: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

$(COMPILED): $(BIN)/api-gateway tools/compile.py $(SOURCES)
	$(BIN)/python tools/compile.py

compiled: $(COMPILED)

demo: $(COMPILED)
	$(BIN)/api-gateway demo

# The tests are type-checked too; bench/ holds gwbench, which the benchmark's tests import.
lint: $(BIN)/api-gateway
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy --strict src
	MYPYPATH=bench $(BIN)/mypy --strict tests

test: lint $(COMPILED)
	$(BIN)/pytest -q

bench: $(COMPILED)
	$(BIN)/python bench/run.py
