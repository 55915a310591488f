# Quick start: `make demo` runs the main job on the bundled sample, `make test` runs every check.
# Needs only Python >= 3.11 with its venv module; everything else goes into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The demo needs only the package and its local SMTP and HTTPS sinks, not the test tools.
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test lint typecheck pytest bench man clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test,demo]'
	touch $@

$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $@

demo: $(DEMO_STAMP)
	$(BIN)/tlsrpt-reporter demo

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The collector's folder is collectd/ but its import name is tlsrpt_collectd: give mypy a view
# of the source tree under the import names.
typecheck: $(STAMP)
	rm -rf $(VENV)/typecheck && mkdir -p $(VENV)/typecheck
	ln -s $(CURDIR)/tlsrpt_reporter $(VENV)/typecheck/tlsrpt_reporter
	ln -s $(CURDIR)/collectd $(VENV)/typecheck/tlsrpt_collectd
	cd $(VENV)/typecheck && MYPYPATH=. $(abspath $(BIN))/mypy \
		--config-file $(CURDIR)/pyproject.toml -p tlsrpt_reporter -p tlsrpt_collectd

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

# man/*.1 and man/*.8 from the argument parsers (argparse-manpage, a test extra); committed,
# and tests/cli/test_man_pages.py fails when they are stale.
man: $(STAMP)
	$(BIN)/python man/generate.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
