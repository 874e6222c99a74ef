# One-word entry points. The first `make` creates .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup tools book demo benchmark test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

## system tools of the book: npm (MathJax and the widget manager for the offline HTML)
## and Chromium (the browser test), both from Debian
tools:
	@command -v npm >/dev/null && command -v chromium >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq --no-install-recommends npm chromium; }

## the main job: execute every chapter (demo profile, synthetic data) and build the book
book: setup tools
	$(PY) -m fuadnb book

## RD on the synthetic benchmark at noise 0 / 0.1 / 0.2, as a table
demo: setup
	$(PY) -m fuadnb demo

## the benchmark of chapter 07: every method x noise x synthetic category x 3 seeds
## (under two hours on 2 CPU cores; resumes if interrupted), table committed
benchmark: setup
	$(PY) -m fuadnb grid bench/demo.yaml --jobs 2 --out runs/bench/demo \
	  --table benchmarks/results/benchmark_demo.csv

## the whole test suite (CPU; never downloads weights; builds the book at the smoke
## profile and checks it in headless Chromium)
test: setup tools lint
	FUADNB_OFFLINE=1 HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow and not gpu"

lint: setup
	$(PY) -m ruff check fuadnb tests benchmarks

clean:
	rm -rf runs _build book/chapters book/_vendor .pytest_cache .ruff_cache
