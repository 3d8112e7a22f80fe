# rainier developer entry points. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck pytest bench fuzz schemas lock clean

setup: $(STAMP)

# Idempotent: rebuilt only when the lock file or the project metadata change.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(BIN)/rainier fleet scenario examples/rainier-frontier.yaml

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: lint typecheck pytest

bench: setup
	$(BIN)/pytest benchmarks -m bench -p no:randomly -o addopts="" -q

# Nightly-style fuzzing: the suite's fuzz tests (tests/test_fuzz.py) at 100,000 examples each (hours).
fuzz: setup
	RAINIER_FUZZ_EXAMPLES=100000 $(BIN)/pytest tests/test_fuzz.py -p no:randomly -o addopts="" -q -x

# Rewrite docs/schemas/*.schema.json from the invocations in tests/json_commands.py (review the diff).
schemas: setup
	$(BIN)/python -m tests.json_commands

# Regenerate the lock file from pyproject.toml (needs network; commit the result).
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links --extra dev --output-file requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
