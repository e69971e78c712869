# `make run`: set up .venv, measure the smoke suite on every backend, open the dashboard.
# `make test`: set up .venv, run ruff and the whole test suite.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SUITE ?= smoke
PORT ?= 8501

.PHONY: setup run test dashboard clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml examples/numba-backend/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all]'
	# the out-of-tree example plugin: its conformance kit and walk-through are tested
	$(BIN)/pip install --quiet -e examples/numba-backend
	touch $@

run: setup
	-$(BIN)/sharedconv run --suite $(SUITE) --run-id latest-$(SUITE)-$$(date +%Y%m%d-%H%M%S)
	$(BIN)/sharedconv dashboard --port $(PORT)

dashboard: setup
	$(BIN)/sharedconv dashboard --port $(PORT)

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

clean:
	rm -rf $(VENV) build *.egg-info
