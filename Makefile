# Two entry points a new machine needs: `make demo` (colobench's default job) and `make test`.
# Both create .venv on first use: torch==2.13.0 first (the CPU wheel), then the pinned rest.
# `demo` installs what colobench needs; `test` adds what the tests use (Ray, pyarrow, quanto, ...).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BASE := $(VENV)/.installed-base
TEST := $(VENV)/.installed-test

.PHONY: demo test install clean browser

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

test: $(TEST) browser
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) colobench-runs
