# The README's two commands are `make run` and `make test`; everything else is a helper.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Tests run the installed console scripts (marginflow) as a user would: put them on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install browser run demo test lint typecheck unit bench clean clean-numba

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# The browser tests drive Debian's Chromium (never `playwright install`, which downloads one).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	command -v chromium >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

run: install
	$(BIN)/marginflow up

demo: install
	$(BIN)/marginflow demo

lint: install
	$(BIN)/ruff check marginflow tests benchmarks
	$(BIN)/ruff format --check marginflow tests benchmarks

typecheck: install
	$(BIN)/mypy

# Tests run on every core (pytest-xdist; each test keeps its own topics, table prefixes and
# folders); work-stealing, since a few tests (the broker outages, SIGKILL soaks) run minutes.
TEST_JOBS ?= 2
unit: install
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist worksteal

test: lint typecheck unit

bench: install
	$(BIN)/python -m benchmarks

# Numba's on-disk cache does not notice a change in a function inlined from another module:
# clear it after pulling changes to marginflow/pricing.
clean-numba:
	find marginflow -name '*.nbi' -delete -o -name '*.nbc' -delete

clean: clean-numba
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
