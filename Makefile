# The two commands a newcomer needs: `make demo` (the whole loop locally) and `make test`.
VENV ?= .venv
PYTEST_ARGS ?=
# `make test` runs the suite on this many pytest-xdist workers, a test file on one worker (its
# module-scoped services started once); most integration tests wait on the services they start,
# so two workers on a 2-core machine finish in well under the serial time. 0: serial. The tests
# marked `alone` (the end-to-end demo: its timing is what it checks) run afterwards, serially.
TEST_WORKERS ?= 2
# Options for `fraudops demo`, e.g. DEMO_ARGS="--kafka apache" (Apache Kafka and the entity stages).
DEMO_ARGS ?=

.PHONY: setup setup-core demo up test test-fast lint compile

setup: $(VENV)/.installed  ## everything, with the tools the tests use (helm, checkov, prometheus)

# The native feature engine's sources too: a change rebuilds it.
NATIVE_SOURCES := native/pyproject.toml native/Cargo.toml native/Cargo.lock $(wildcard native/src/*.rs)

$(VENV)/.installed: pyproject.toml scripts/bootstrap.sh $(NATIVE_SOURCES)
	VENV=$(VENV) scripts/bootstrap.sh

setup-core: $(VENV)/.installed-core  ## the platform alone (what demo and up need)

$(VENV)/.installed-core: pyproject.toml scripts/bootstrap.sh $(NATIVE_SOURCES)
	VENV=$(VENV) TEST_TOOLS=0 scripts/bootstrap.sh

demo: setup-core  ## set up, then run the whole platform loop locally
	$(VENV)/bin/fraudops demo $(DEMO_ARGS)

up: setup-core  ## start the local platform without the scripted scenario
	$(VENV)/bin/fraudops up

test: setup  ## set up, then run the whole test suite
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile -m "not alone" $(PYTEST_ARGS)
	$(VENV)/bin/pytest -m alone $(PYTEST_ARGS)

test-fast: setup  ## unit tests only (no services started)
	$(VENV)/bin/pytest -m "not integration" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports  # the package graph's contracts (pyproject.toml [tool.importlinter])
	@if command -v cargo >/dev/null 2>&1; then cargo fmt --manifest-path native/Cargo.toml --check; \
	else echo "cargo not on PATH: the native engine's formatting is not checked"; fi
