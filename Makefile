# The two set-up commands: `make demo` (gateway + stub services) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The request path compiled with mypyc; rebuilt whenever any source changes (see tools/compile.py).
COMPILED := src/api_gateway/_compiled/manifest.json
SOURCES := $(shell find src/api_gateway -name '*.py' -not -path '*/_compiled/*')

.PHONY: demo test lint bench compiled debian-tools

# Debian's tools that tests and the benchmark use: promtool and prometheus (the alert rules, a
# real scrape of /metrics), chromium (the status page, headless), wrk (load). Nothing happens when
# they are all there; as root they are installed with apt-get; otherwise one line says what to
# install, and the tests that need them skip, saying so.
DEBIAN_PACKAGES := prometheus chromium wrk
DEBIAN_COMMANDS := promtool prometheus chromium wrk

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

debian-tools:
	@missing=""; \
	for command in $(DEBIAN_COMMANDS); do \
		command -v $$command >/dev/null 2>&1 || missing="$$missing $$command"; \
	done; \
	if [ -z "$$missing" ]; then \
		exit 0; \
	elif [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian packages $(DEBIAN_PACKAGES) (missing:$$missing)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update && apt-get install -y --no-install-recommends $(DEBIAN_PACKAGES); \
	else \
		echo "missing:$$missing; as root: apt-get install --no-install-recommends $(DEBIAN_PACKAGES) (the tests that need them skip)"; \
	fi

test: debian-tools lint $(COMPILED)
	$(BIN)/pytest -q

bench: debian-tools $(COMPILED)
	$(BIN)/python bench/run.py
