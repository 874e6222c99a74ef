# One-word entry points. The first `make` creates .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup tools book lab demo benchmark budget regimes speed rehearsal gpu-check test lint clean

# one stamp per extra: `make book` installs what the book needs (the `book` extra),
# `make test` adds the test tools (the `dev` extra: pytest, ruff, timm, playwright)
$(VENV)/.installed-%: pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[$*]'
	touch $@

setup: $(VENV)/.installed-dev

## system tools, each installed only when missing (.ci/tools says what and why):
## npm for the book's offline browser assets, Chromium for the browser test
tools:
	@bash .ci/tools npm chromium

## the main job: execute every chapter (demo profile, synthetic data) and build the book
book: $(VENV)/.installed-book
	@bash .ci/tools npm
	$(PY) -m fuadnb book

## the chapter sources in JupyterLab, widgets live: installs the `lab` extra (the
## book's and JupyterLab) into .venv, then opens notebooks/; each chapter runs top to
## bottom at its default parameters (LAB_OPTIONS, e.g. --no-browser --port 8889)
LAB_OPTIONS ?=
lab: $(VENV)/.installed-lab
	$(PY) -m jupyterlab --ServerApp.root_dir=notebooks $(LAB_OPTIONS)

## RD on the synthetic benchmark at noise 0 / 0.1 / 0.2, as a table (a grid of the
## benchmark cell: runs/demo/ holds its grid file, notebooks and table)
demo: $(VENV)/.installed-book
	$(PY) -m fuadnb demo

## the benchmark of chapter 08, third edition: 9 methods x 5 conditions x 29 synthetic
## v3 categories (+ 3 seeds on five, at 64 and 96 px): 2205 points, longer than one
## sitting on 2 CPU cores; resumes from the committed table on any clone
benchmark: $(VENV)/.installed-book
	$(PY) -m fuadnb generate --v3 --root data/synthetic_v3
	$(PY) -m fuadnb generate --v3 --size 96 --root data/synthetic_v3_96 \
	  --categories coin grass gravel brick weave
	$(PY) -m fuadnb grid benchmarks/grids/benchmark_v3.yaml --jobs 2 \
	  --out runs/grids/benchmark_v3 --table benchmarks/results/benchmark_v3_demo.csv

## the budget ablation of chapter 08: RD at 1x/4x/16x its budget, six categories
budget: $(VENV)/.installed-book
	$(PY) -m fuadnb generate --v3 --root data/synthetic_v3
	$(PY) -m fuadnb grid benchmarks/grids/budget_v3.yaml --jobs 2 \
	  --out runs/grids/budget_v3 --table benchmarks/results/budget_v3_demo.csv

## RD under every contamination regime (chapter 02's table): 105 runs, about 1.5-2 h
## on 2 CPU cores (two at a time; resumes if interrupted), table committed
regimes: $(VENV)/.installed-book
	$(PY) -m fuadnb grid benchmarks/grids/rd_regimes.yaml --jobs 2 \
	  --out runs/grids/rd_regimes \
	  --table benchmarks/results/rd_regimes_demo.csv

## the speed tables of benchmarks/speed/ on DEVICE, each from one run: how every
## method's cost grows (cost_growth), our RD beside anomalib's (vs_anomalib, from the
## `peers` extra in a venv of its own, $(VENV)-peers) and RD-E's synthesis share.
## `make speed` (cpu): the committed CPU tables and the book's time-and-memory page,
## about two hours on 2 cores; `make speed DEVICE=cuda` on a GPU: the CUDA tests
## first, then the same tables for CUDA (the book's page untouched)
DEVICE ?= cpu
speed: $(VENV)/.installed-dev $(VENV)-peers/.installed
ifeq ($(DEVICE),cuda)
	FUADNB_OFFLINE=1 HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m gpu
	$(PY) benchmarks/speed/cost_growth.py --device cuda --page '' \
	  --out benchmarks/results/cost_growth_cuda.csv
else
	$(PY) benchmarks/speed/cost_growth.py --device $(DEVICE)
endif
	$(VENV)-peers/bin/python benchmarks/speed/vs_anomalib.py --device $(DEVICE) \
	  --explain --csv benchmarks/results/vs_anomalib_$(DEVICE).csv
	$(PY) benchmarks/speed/rde_synthesis.py --device $(DEVICE) --steps 16 --images 32 \
	  --foreground

$(VENV)-peers/.installed: pyproject.toml
	@[ -x $(VENV)-peers/bin/python ] || $(PYTHON) -m venv $(VENV)-peers
	$(VENV)-peers/bin/python -m pip install -q -e '.[peers]'
	touch $@

## the dress rehearsal of the paper grid on the CPU: benchmarks/grids/paper.yaml (all
## 3240 points) and the same methods on BTAD, MPDD and Real-IAD (624), on generated
## stand-ins of the datasets at a few steps of 64 px, then chapter 08 per dataset;
## not results. About 11 points a minute on 2 cores (all: about 6 hours; resumes from
## the committed tables): SUBSET=stratified (every method, regime, ratio, dataset,
## category and seed; 165 points) about a quarter of an hour
SUBSET ?= all
JOBS ?= 2
rehearsal: $(VENV)/.installed-dev
	FUADNB_OFFLINE=1 HF_HUB_OFFLINE=1 $(PY) -m fuadnb rehearse --subset $(SUBSET) \
	  --jobs $(JOBS) --out runs/rehearsal --tables benchmarks/results

## on a machine with a GPU, about 10 minutes: the CUDA tests, one paper-profile fit
## per method in fp32 and bf16 (images/s, peak memory, metrics side by side) and
## vs_anomalib on CUDA; tables under runs/gpu_check/<date>/
gpu-check: $(VENV)/.installed-dev
	PYTHON=$(PY) bash benchmarks/gpu_check.sh

## the whole test suite (CPU; never downloads weights; builds the book at the smoke
## profile and checks it in headless Chromium; lists the 15 slowest tests, so that the
## suite's time stays visible as the committed tables grow)
test: setup tools lint
	FUADNB_OFFLINE=1 HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow and not gpu" \
		--durations=15

lint: setup
	$(PY) -m ruff check fuadnb tests benchmarks

clean:
	rm -rf runs _build book/chapters book/_vendor .pytest_cache .ruff_cache
