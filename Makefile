# One-word entry points. The first `make` creates .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

## the main job: RD on the synthetic benchmark at noise 0 / 0.1 / 0.2, as a table
demo: setup
	$(PY) -m fuadnb demo

## the whole test suite (CPU; never downloads)
test: setup lint
	FUADNB_OFFLINE=1 HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow and not gpu"

lint: setup
	$(PY) -m ruff check fuadnb tests benchmarks

clean:
	rm -rf runs _build .pytest_cache .ruff_cache
