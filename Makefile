# `make run`: set up .venv, measure the smoke suite on every backend, open the dashboard.
# `make test`: set up .venv, run ruff and the test suite (`make test-all`: with the slow tests).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SUITE ?= smoke
PORT ?= 8501

.PHONY: setup run test test-all dashboard reports clean

setup: $(VENV)/.installed

# setup.py and the kernel source: the install compiles the native kernel
$(VENV)/.installed: pyproject.toml setup.py backends/native_kernel.cpp examples/numba-backend/pyproject.toml
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

# the tests marked slow (the layer examples' training scripts, the GPU check's CPU dry run) are
# left out of `make test` to keep it near 15 minutes on 2 cores; `make test-all` runs them too
test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -m "not slow"

test-all: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

# the committed reports of the reference runs (docs/reports/, linked from the README)
reports: setup
	$(BIN)/sharedconv report results/reference --html docs/reports/reference.html --markdown docs/reports/reference.md
	$(BIN)/sharedconv report results/reference-h100-tf32-off-channels --html docs/reports/h100-channels.html --markdown docs/reports/h100-channels.md
	$(BIN)/sharedconv report results/reference-seed --markdown docs/reports/seed.md

clean:
	rm -rf $(VENV) build *.egg-info
