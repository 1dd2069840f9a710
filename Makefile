# The two set-up commands: `make demo` (gateway + stub services) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Written by tools/venv.py once the package and its pinned dependencies are installed.
INSTALLED := $(VENV)/.installed
# The request path compiled with mypyc; rebuilt whenever any source changes (see tools/compile.py).
COMPILED := src/api_gateway/_compiled/manifest.json
SOURCES := $(shell find src/api_gateway -name '*.py' -not -path '*/_compiled/*')

.PHONY: demo test lint bench compiled debian-tools prerequisites test-prerequisites venv clean dist

# Debian's tools that tests and the benchmark use: promtool and prometheus (the alert rules, a
# real scrape of /metrics), chromium (the status page, headless), wrk (load), valgrind (the
# instruction counts of bench/). Nothing happens when
# they are all there; as root they are installed with apt-get; otherwise one line says what to
# install, and the tests that need them skip, saying so.
DEBIAN_PACKAGES := prometheus chromium wrk valgrind
DEBIAN_COMMANDS := promtool prometheus chromium wrk valgrind

# What the set-up needs before anything is built, each named in one line with how to install it:
# Python 3.11 (with venv), a C compiler and the Python headers (the compile).
prerequisites:
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
		echo "$(PYTHON) not found: install Python 3.11 (apt-get install python3.11 python3.11-dev python3.11-venv), or make ... PYTHON=/path/to/python3.11"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || { \
		echo "$(PYTHON) is not Python 3.11 (it is $$($(PYTHON) -c 'import platform; print(platform.python_version())' 2>/dev/null || echo 'not runnable')): apt-get install python3.11 python3.11-dev python3.11-venv, then make ... PYTHON=python3.11"; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		echo "$(PYTHON) cannot make a virtual environment (no ensurepip): apt-get install python3.11-venv"; exit 1; }
	@$(PYTHON) tools/compile.py --check

# The tests also start private redis-server processes and run curl.
test-prerequisites:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "redis-server not found (the tests start their own): apt-get install redis-server"; exit 1; }
	@command -v curl >/dev/null 2>&1 || { echo "curl not found: apt-get install curl"; exit 1; }

# Creates .venv, or finds a half-made one (an interrupted first run, another Python, no package
# installed) and rebuilds or completes it.
venv: prerequisites
	@$(PYTHON) tools/venv.py $(VENV)

$(COMPILED): $(INSTALLED) tools/compile.py $(SOURCES)
	$(BIN)/python tools/compile.py

# A second make, so that the timestamps are read after `venv` may have (re)installed.
compiled: venv
	@$(MAKE) --no-print-directory --silent $(COMPILED)

demo: compiled
	$(BIN)/api-gateway demo

# The tests are type-checked too; bench/ holds gwbench, which the benchmark's tests import.
lint: venv
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

test: prerequisites test-prerequisites debian-tools lint compiled
	$(BIN)/pytest -q

bench: debian-tools compiled
	$(BIN)/python bench/run.py

# An sdist and a platform wheel (the request path compiled in, tools/build_backend.py) in dist/,
# the build environments pinned by constraints.txt.
dist: venv
	rm -rf dist
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(BIN)/python -m build --outdir dist .

clean:
	rm -rf $(VENV) src/api_gateway/_compiled dist build src/*.egg-info bench/.work \
		.mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
