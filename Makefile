# The two commands a newcomer needs: `make demo` (the whole loop locally) and `make test`.
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: setup setup-core demo up test test-fast lint compile

setup: $(VENV)/.installed  ## everything, with the tools the tests use (helm, checkov, prometheus)

$(VENV)/.installed: pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) scripts/bootstrap.sh

setup-core: $(VENV)/.installed-core  ## the platform alone (what demo and up need)

$(VENV)/.installed-core: pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) TEST_TOOLS=0 scripts/bootstrap.sh

demo: setup-core  ## set up, then run the whole platform loop locally
	$(VENV)/bin/fraudops demo

up: setup-core  ## start the local platform without the scripted scenario
	$(VENV)/bin/fraudops up

test: setup  ## set up, then run the whole test suite
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: setup  ## unit tests only (no services started)
	$(VENV)/bin/pytest -m "not integration" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports  # the package graph's contracts (pyproject.toml [tool.importlinter])
