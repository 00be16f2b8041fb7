# Two entry points a new machine needs: `make demo` (colobench's default job) and `make test`.
# Both create .venv on first use: torch==2.13.0 first (the CPU wheel), then the pinned rest.
# `demo` installs what colobench needs; `test` adds what the tests use (Ray, pyarrow, quanto, ...).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BASE := $(VENV)/.installed-base
TEST := $(VENV)/.installed-test

# Test tiers (docs/development.md): `make check` is the edit loop (lint, then the tests not marked
# slow); `make test` is the whole suite, CI's command. Both run pytest-xdist workers: JOBS of them
# (default: one more than the cores, since many tests wait on servers and sleeps; JOBS=0: no workers,
# the tests run in pytest's own process).
JOBS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) + 1 )))
# The suite starts hundreds of Python processes (workers, servers, the CLI): bytecode is cached in
# __pycache__ (ignored by git) even where the environment sets PYTHONDONTWRITEBYTECODE.
PYTEST := PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n $(JOBS) --dist loadgroup

.PHONY: demo test check lint install clean browser

$(BASE): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $(BASE)

$(TEST): $(BASE)
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(TEST)

install: $(BASE)

demo: $(BASE)
	$(BIN)/colobench run

# The browser test needs Debian's chromium; installed when we can (root with apt), skipped otherwise.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
		echo "chromium not installed: the browser test will be skipped"

lint: $(TEST)
	$(BIN)/ruff check src tests benchmarks

check: lint
	$(PYTEST) -q -m "not slow"

# --durations=10: the ten slowest tests, printed at the end, so the next person sees where time goes
test: $(TEST) browser lint
	$(PYTEST) -q --durations=10

clean:
	rm -rf $(VENV) colobench-runs
