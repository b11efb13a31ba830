"""Each paper table's grid at two scales: `paper` (the paper's models, data, epochs, lr grids, seeds,
hardware=gpu) and `cpu` (a faithful miniature that runs offline on 2 cores in about an hour: the embedded
MiniLM-L6 / SmolLM2-135M, ../shared/data subsets, fewer tasks, one seed; `note` says what was shrunk).

A grid is `common` settings plus run blocks; every value list in a block is crossed with the others, with
`tasks` and with `seeds`. `{data}` stands for the data root (make ... DATA=...). `select_best` is passed to
the table builder (the papers pick the best point of an lr search on dev).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Grid:
    common: dict
    runs: list[dict]
    tasks: tuple = ()
    seeds: tuple = (42,)
    select_best: str | None = None
    note: str = ""


@dataclass
class PaperTable:
    title: str
    paper: str | None  # the published numbers' spec (scripts/make_table.py --paper)
    paper_scale: Grid | None
    cpu: Grid | None
    cost: str  # paper-scale cost: a rough estimate of A100-hours, for planning
    missing: str = ""  # why a scale has no grid


GLUE_CPU = ("glue/sst2", "glue/mrpc", "glue/stsb")
GLUE_ALL = ("glue/mnli", "glue/qqp", "glue/qnli", "glue/sst2", "glue/cola", "glue/stsb", "glue/mrpc", "glue/rte")
SPEFT_GLUE = ("glue/mnli", "glue/mrpc", "glue/qnli", "glue/qqp", "glue/sst2", "glue/stsb")
SPEFT_TABLE1_MODELS = ["speft-glue-opt350m", "speft-glue-bert"]
SALIENCES = ["magnitude", "gradient", "snip", "force", "taylor_fo", "synflow", "grasp", "fisher"]

# MiniLM-L6 on GLUE subsets (measured: ~2-4 min a job, two jobs at a time on 2 cores): 1,000 training examples,
# 2 epochs of batch 16 (126 steps), dev capped at 500 and scored every 25 steps; the exported model is the best
# dev point of the final phase (the cool-down, as the PST reference picks), no clipping
CPU_GLUE = {"model": "minilm-l6", "task.data_dir": "{data}/glue", "task.max_train_samples": 1000,
            "task.max_eval_samples": 500, "train.epochs": 2, "train.batch_size": 16, "train.eval_strategy": "steps",
            "train.eval_steps": 25}
PST_CPU = {**CPU_GLUE, "train.lr": 1.0e-4, "train.max_grad_norm": 0.0, "train.select": "best",
           "mask_schedule.warmup": 0.1, "mask_schedule.cooldown": 0.3}
# the paper searched lr per method and task; the miniature searches the two ends of the paper's grid that
# matter in a 126-step run (PST's factors start near zero and need the larger one; MaP does best at the smaller)
LR_SEARCH_CPU = {"train.lr": [1.0e-4, 5.0e-4]}
# tables that compare PST with itself (ranks, score terms) use the lr the search picks for PST
PST_ONLY_CPU = {**PST_CPU, "train.lr": 5.0e-4}
PST_PAPER_BERT = {"experiment": "pst-glue-bert", "task.data_dir": "{data}/glue"}
PST_MODELS = ["pst-glue-bert", "pst-glue-roberta-base", "pst-glue-roberta-large"]
# SPEFT / LoRA / PiSSA miniatures: lr 5e-3, from a probe on SST-2 (gradient SPEFT and LoRA r=8, 126 steps) over
# {5e-4, 5e-3, 2e-2}: 5e-4 leaves both at the majority class (53.0), 5e-3 gives 80.6 / 79.2, 2e-2 diverges (53.0)
SPEFT_CPU = {**CPU_GLUE, "train.lr": 5.0e-3, "method.target_modules": "[query,value]", "salience.num_batches": 64,
             "salience.batch_size": 16}
# SmolLM2-135M: one-shot pruning calibrated on 32 x 256 Alpaca tokens, SPP/LoRA* on the 100-row Alpaca file,
# zero-shot lm-eval on 100 documents per task (batches of 16) and WikiText-2 perplexity on 16 chunks of 512 tokens
SPP_CPU = {"experiment": "spp-smollm2-cpu", "task.data_files": "{{train: {data}/alpaca/alpaca_tiny.json}}",
           "eval": "llm", "eval.tasks": "[boolq,rte,winogrande,arc_easy,arc_challenge,openbookqa]",
           "eval.data_dir": "{data}", "eval.limit": 100, "eval.batch_size": 16,
           "eval.perplexity.data_file": "{data}/wikitext-2-raw/test.hf_rows.txt",
           "eval.perplexity.seqlen": 512, "eval.perplexity.max_chunks": 16}
# the same SmolLM2 runs scored on MMLU 5-shot instead: the first test question of each of the 57 subjects, one at a
# time (5-shot contexts reach 4k tokens: a batch of 8 holds 6 GB of fp32 logits over the 49k vocabulary). One
# question takes ~12 s on one thread, so 5 per subject made a 9-job table take ~9 hours here instead of about one.
SMOLLM2_MMLU_CPU = {"eval": "mmlu", "eval.data_dir": "{data}", "eval.limit": 1, "eval.batch_size": 1}
SPP_MMLU_CPU = {"experiment": "spp-smollm2-cpu", "task.data_files": "{{train: {data}/alpaca/alpaca_tiny.json}}",
                **SMOLLM2_MMLU_CPU}
# SPEFT Table 2 in miniature: SmolLM2-135M on the 100-row Alpaca file, 40 steps, q/k/v/o at LoRA r=8's count
# (the paper: r=64 on Gemma2-2b), salience on 32 examples; lr 2e-4 for every method (40 steps leave no room
# for the paper's 1e-5)
SPEFT_MMLU_CPU = {"model": "smollm2-135m", "task": "alpaca", "task.data_files": "{{train: {data}/alpaca/alpaca_tiny.json}}",
                  "task.options.val_set_size": 20, "task.max_length": 256, "train.batch_size": 4, "train.max_steps": 40,
                  "train.lr": 2.0e-4, "train.warmup_ratio": 0.03, "train.eval_strategy": "no", "method.targets": "attention",
                  "salience.num_batches": 8, "salience.batch_size": 4, **SMOLLM2_MMLU_CPU}
# SPEFT Table 3 in miniature: SmolLM2-135M on 160 GSM8K training problems (MetaMathQA, which rewrites GSM8K
# and MATH, is not offline), 40 steps as Table 2's miniature, then lm-eval's gsm8k_cot 5-shot on the first 20
# test questions with at most 128 new tokens (~15 s a question on one thread; the exemplars' answers fit in 128)
SPEFT_GSM8K_CPU = {"model": "smollm2-135m", "task": "gsm8k",
                   "task.data_files": "{{train: {data}/gsm8k/train.jsonl, test: {data}/gsm8k/test.jsonl}}",
                   "task.max_train_samples": 160, "task.max_eval_samples": 16, "task.max_length": 256,
                   "task.options.eval_prompt": "cot", "task.options.num_fewshot": 5, "task.options.eval_examples": 20,
                   "task.options.max_new_tokens": 128, "task.options.eval_batch_size": 1,
                   "train.batch_size": 4, "train.max_steps": 40, "train.lr": 2.0e-4, "train.warmup_ratio": 0.03,
                   "train.eval_strategy": "no", "method.targets": "attention", "salience.num_batches": 8,
                   "salience.batch_size": 4}
# PST Table 3 in miniature: SmolLM2-135M for GPT-2 medium, 1,000 E2E training examples, 1 epoch, the
# reference's decoding (beam 10, length penalty 0.8, no repeated 4-gram, 64 new tokens) on 40 test sources
PST_NLG_CPU = {"experiment": "pst-e2e-gpt2", "model": "smollm2-135m", "hardware": "cpu", "train.batch_size": 8,
               "train.epochs": 1, "train.warmup_steps": 10, "task.max_train_samples": 1000, "task.max_length": 256,
               "task.max_eval_samples": 400,  # dev loss on 400 of E2E's 4,693 dev pairs (all of them: ~30 min here)
               "task.data_dir": "{data}/e2e", "task.options.eval_examples": 40, "task.options.eval_batch_size": 8}
SPP_PAPER = {"eval.data_dir": "{data}"}  # each run block names its model's preset (per-size lr / batch / epochs)
PRUNED_ONLY = {"train.max_steps": 0}


def _pruner_grid(common: dict, patterns: list[dict], variants: list[dict], experiments=None, note="") -> Grid:
    """Dense (evaluate only), then each pruner x pattern x variant (pruned only / + SPP), per model preset."""
    per_model = {"experiment": experiments} if experiments else {}
    runs = [{**per_model, "method": "spp", "salience": ["wanda", "sparsegpt"], **p, **v} for p in patterns for v in variants]
    dense = {**per_model, "method": "full", "train.max_steps": 0}
    return Grid(common, [dense, *runs], note=note)


def _with_runs(grid: Grid, runs: list[dict]) -> Grid:
    return Grid(grid.common, [*grid.runs, *runs], grid.tasks, grid.seeds, grid.select_best, grid.note)


UNSTRUCTURED_50 = {"method.pattern": "unstructured", "method.sparsity": 0.5}
TWO_FOUR = {"method.pattern": "2:4", "method.sparsity": None}
SEVENTY_FIVE = [{"method.pattern": "unstructured", "method.sparsity": 0.75}, {"method.pattern": "2:8", "method.sparsity": None}]
# Wanda + DSnoT (training-free mask refinement), pruned only: SPP Table 3's and Figure 1's comparison rows
DSNOT_PRUNED = {"method": "spp", "salience": "dsnot", "salience.options.base": "wanda", **PRUNED_ONLY}
SPP_FIGURE1 = [{"method": "spp", **PRUNED_ONLY}, DSNOT_PRUNED, {"method": "lora_star"}, {"method": "spp"}]
LLAMA = ["spp-alpaca-llama7b", "spp-alpaca-llama13b", "spp-alpaca-llama30b", "spp-alpaca-llama65b"]
LLAMA2 = ["spp-alpaca-llama2-7b", "spp-alpaca-llama2-13b", "spp-alpaca-llama2-70b"]

TABLES: dict[str, PaperTable] = {
    "pst-table2": PaperTable(
        "GLUE dev, full FT / MaP / MvP / PST at 50 % and 90 %", "pst-table2",
        Grid({"task.data_dir": "{data}/glue"},
             [{"experiment": PST_MODELS, "method": "full"},
              {"experiment": PST_MODELS, "method": ["magnitude", "movement", "pst"], "method.sparsity": [0.5, 0.9]}],
             GLUE_ALL, seeds=(43,),
             note="BERT-base, RoBERTa-base / -large with the reference README's settings; the paper also searched lr "
                  "and epochs (run again with train.lr=... and build with --select-best lr)"),
        Grid(PST_CPU, [{"method": "full", **LR_SEARCH_CPU},
                       {"method": ["magnitude", "movement", "pst"], "method.sparsity": [0.5, 0.9], **LR_SEARCH_CPU}],
             GLUE_CPU, select_best="lr",
             note="MiniLM-L6 for BERT-base; SST-2, MRPC, STS-B (accuracy, F1, Pearson); 1,000 training "
                  "examples, 2 epochs, lr searched in {1e-4, 5e-4} per row and task (best dev point), one seed"),
        cost="8 tasks x 7 rows x 3 models, 20 epochs: ~1,000 GPU-hours (MNLI/QQP dominate)"),
    "pst-table4": PaperTable(
        "PST 90 %, ranks r1 x r2 (MRPC, SST-2)", "pst-table4",
        Grid(PST_PAPER_BERT, [{"method": "pst", "method.sparsity": 0.9, "method.r1": [4, 8, 16], "method.r2": [4, 8, 16]}],
             ("glue/mrpc", "glue/sst2"), seeds=(43,)),
        Grid(PST_ONLY_CPU, [{"method": "pst", "method.sparsity": 0.9, "method.r1": [4, 8, 16], "method.r2": [4, 8, 16]}],
             ("glue/mrpc", "glue/sst2"), note="MiniLM-L6, 1,000 training examples, 2 epochs, lr 5e-4"),
        cost="9 rank pairs x 2 tasks, BERT-base: ~40 GPU-hours"),
    "pst-table5": PaperTable(
        "PST 90 %, importance-score ablation", "pst-table5",
        Grid(PST_PAPER_BERT, [{"method": ["pst", "pst-ablation-magnitude", "pst-ablation-lowrank", "pst-ablation-structured",
                                          "pst-ablation-magnitude-lowrank", "pst-ablation-magnitude-structured",
                                          "pst-ablation-lowrank-structured"], "method.sparsity": 0.9}],
             GLUE_ALL, seeds=(43,)),
        Grid(PST_ONLY_CPU, [{"method": ["pst", "pst-ablation-magnitude", "pst-ablation-lowrank", "pst-ablation-structured",
                                   "pst-ablation-magnitude-lowrank", "pst-ablation-magnitude-structured",
                                   "pst-ablation-lowrank-structured"], "method.sparsity": 0.9}],
             ("glue/sst2", "glue/mrpc", "glue/rte"), note="MiniLM-L6, 3 tasks, 1,000 training examples, 2 epochs, lr 5e-4"),
        cost="7 score variants x 8 tasks, BERT-base: ~250 GPU-hours"),
    "pst-figure3": PaperTable(
        "accuracy vs sparsity, MaP / MvP / PST", None,
        Grid(PST_PAPER_BERT, [{"method": ["magnitude", "movement", "pst"], "method.sparsity": [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]}],
             ("glue/mrpc", "glue/sst2"), seeds=(43,)),
        Grid(PST_CPU, [{"method": ["magnitude", "movement", "pst"], "method.sparsity": [0.5, 0.7, 0.9, 0.95], **LR_SEARCH_CPU}],
             ("glue/sst2",), select_best="lr",
             note="MiniLM-L6 on SST-2 only (MRPC's F1 barely moves at 1,000 examples), 4 sparsities, 1,000 training "
                  "examples, 2 epochs, lr searched in {1e-4, 5e-4} per point (best dev point)"),
        cost="18 runs x 2 tasks, BERT-base: ~60 GPU-hours"),
    "pst-table3": PaperTable(
        "GPT-2 medium on E2E / DART / WebNLG at 90 %", "pst-table3",
        Grid({"experiment": "pst-e2e-gpt2"}, [{"method": "full"}, {"method": ["magnitude", "movement", "pst"], "method.sparsity": 0.9}],
             ("e2e", "dart", "webnlg"), seeds=(43,)),
        Grid(PST_NLG_CPU, [{"method": "full"}, {"method": ["magnitude", "movement", "pst"], "method.sparsity": 0.9}],
             ("e2e",),
             note="SmolLM2-135M for GPT-2 medium (no GPT-2 weights offline), E2E only (DART and WebNLG have only their "
                  "dev sets offline: nothing to train on), 1,000 training examples, 1 epoch, the first 40 test sources "
                  "decoded as the reference"),
        cost="4 rows x 3 datasets, GPT-2 medium 5 epochs: ~100 GPU-hours"),
    "speft-table1": PaperTable(
        "GLUE dev, 8 salience metrics vs LoRA / PiSSA at equal budget", "speft-table1",
        Grid({"task.data_dir": "{data}/glue", "salience.num_batches": 64, "salience.batch_size": 16},
             [{"experiment": SPEFT_TABLE1_MODELS, "method": "speft", "salience": SALIENCES},
              {"experiment": SPEFT_TABLE1_MODELS, "method": ["lora", "pissa"]}], SPEFT_GLUE,
             seeds=(42, 43, 44), select_best="lr",
             note="run once per lr of the paper's grid (5e-4 ... 5e-5) with train.lr=...; --select-best lr picks"),
        Grid(SPEFT_CPU, [{"method": "speft", "salience": SALIENCES}, {"method": ["lora", "pissa"]}],
             ("glue/sst2", "glue/mrpc", "glue/rte", "glue/stsb"),
             note="MiniLM-L6 (q, v at LoRA r=8's count, 0.32 % of MiniLM), 4 tasks, 1,000 training examples, 2 epochs, "
                  "lr 5e-3 (probed on SST-2: 5e-4 stays at the majority class), salience on 1,024 examples, one seed"),
        cost="10 methods x 6 tasks x 3 seeds x 2 models, 30 epochs: ~1,500 GPU-hours"),
    "speft-table2": PaperTable(
        "5-shot MMLU after instruction tuning on Alpaca / OASST2, salience metrics vs LoRA", "speft-table2",
        Grid({"eval.data_dir": "{data}"},
             [{"experiment": "speft-mmlu-gemma", "model": ["gemma-2-2b", "qwen2-7b"], "method": "speft", "salience": SALIENCES,
               "method.match_lora_rank": 64},
              {"experiment": "speft-mmlu-gemma", "model": ["gemma-2-2b", "qwen2-7b"], "method": "lora", "method.r": 64,
               "method.alpha": 16, "train.lr": 5.0e-5}], ("alpaca", "oasst2"), seeds=(242,),
             note="the reference's bs 4 x 4, 2,000 steps; sparse lr 1e-5, LoRA lr 5e-5 (its scripts)"),
        Grid(SPEFT_MMLU_CPU, [{"method": "speft", "salience": SALIENCES, "method.match_lora_rank": 8},
                              {"method": "lora", "method.r": 8, "method.alpha": 16}], seeds=(242,),
             note="SmolLM2-135M for Gemma2-2b / Qwen2-7b, Alpaca only (no OASST2 file offline), 40 steps on 100 rows, "
                  "MMLU 5-shot on 1 question per subject (57: one standard error is ~6 points, so only large differences count)"),
        cost="18 runs x 2 datasets x 2,000 steps, Gemma2-2b / Qwen2-7b: ~300 GPU-hours"),
    "speft-table3": PaperTable(
        "GSM8K (CoT 5-shot) after MetaMathQA, salience metrics vs LoRA and the pretrained model", None,
        Grid({"model": "gemma-2-2b", "task": "metamathqa", "hardware": "gpu", "train.batch_size": 4, "train.grad_accum": 4,
              "train.epochs": 1, "train.lr": 2.0e-5, "train.warmup_ratio": 0.03, "train.eval_strategy": "no",
              "method.targets": "attention"},
             [{"method": "full", "train.max_steps": 0}, {"method": "speft", "salience": SALIENCES, "method.match_lora_rank": 64},
              {"method": "lora", "method.r": 64, "method.alpha": 16}],
             note="Gemma2-2b, 0.97 % trainable (LoRA r=64 on q/k/v/o); the pretrained row is an evaluate-only run"),
        Grid(SPEFT_GSM8K_CPU, [{"method": "full", "train.max_steps": 0},
                               {"method": "speft", "salience": SALIENCES, "method.match_lora_rank": 8},
                               {"method": "lora", "method.r": 8, "method.alpha": 16}],
             note="SmolLM2-135M for Gemma2-2b, 160 GSM8K training problems for MetaMathQA (not offline), 40 steps; "
                  "gsm8k_cot 5-shot on the first 20 test questions, 128 new tokens at most (one standard error is "
                  "up to ~11 points: the miniature checks the pipeline, not the ordering)"),
        cost="10 runs, Gemma2-2b 1 epoch of 100k examples: ~120 GPU-hours"),
    "speft-table9": PaperTable(
        "GLUE dev, salience metrics on RoBERTa-base (0.24 %)", "speft-table9",
        Grid({"task.data_dir": "{data}/glue", "salience.num_batches": 64, "salience.batch_size": 16},
             [{"experiment": "speft-glue-roberta", "method": "speft", "salience": SALIENCES},
              {"experiment": "speft-glue-roberta", "method": ["lora", "pissa"]}], SPEFT_GLUE, seeds=(42, 43, 44),
             select_best="lr"),
        None, cost="10 methods x 6 tasks x 3 seeds, 30 epochs: ~400 GPU-hours",
        missing="the CPU miniature is speft-table1's (MiniLM-L6 stands in for every encoder)"),
    "speft-table11": PaperTable(
        "GLUE dev subset, salience metrics on OPT-1.3b (0.18 %)", "speft-table11",
        Grid({"task.data_dir": "{data}/glue", "salience.num_batches": 64, "salience.batch_size": 16},
             [{"experiment": "speft-glue-opt1.3b", "method": "speft", "salience": SALIENCES},
              {"experiment": "speft-glue-opt1.3b", "method": ["lora", "pissa"]}],
             ("glue/mrpc", "glue/qnli", "glue/sst2", "glue/stsb", "glue/qqp"),
             seeds=(42, 43, 44), select_best="lr"),
        None, cost="10 methods x 5 tasks x 3 seeds, 30 epochs: ~1,200 GPU-hours",
        missing="the CPU miniature is speft-table1's (MiniLM-L6 stands in for every encoder)"),
    "speft-table4": PaperTable(
        "gradient SPEFT: static vs dynamic masks, global vs local ranking", "speft-table4",
        Grid({"experiment": "speft-glue-opt350m", "task.data_dir": "{data}/glue", "method": "speft", "salience": "gradient"},
             [{"mask_schedule": ["static", "dynamic"], "method.scope": ["global", "local"], "mask_schedule.update_every": 1000}],
             SPEFT_GLUE, seeds=(42,)),
        Grid({**SPEFT_CPU, "method": "speft", "salience": "gradient"},
             [{"mask_schedule": "static", "method.scope": ["global", "local"]},
              {"mask_schedule": "dynamic", "method.scope": ["global", "local"], "mask_schedule.update_every": 50}],
             ("glue/sst2", "glue/mrpc", "glue/rte"), note="MiniLM-L6, 3 tasks; dynamic re-selection every 50 steps "
                                                          "(the paper: 1,000) so a 126-step run re-selects twice"),
        cost="4 variants x 6 tasks, OPT-350m: ~150 GPU-hours"),
    "speft-figure2": PaperTable(
        "score vs trainable parameters: LoRA / PiSSA vs gradient SPEFT at each LoRA rank's count", None,
        Grid({"model": "gemma-2-2b", "task": "metamathqa", "eval": "none", "hardware": "gpu", "train.batch_size": 4,
              "train.grad_accum": 4, "train.epochs": 1, "train.lr": 2.0e-5, "train.warmup_ratio": 0.03,
              "train.eval_strategy": "no", "method.targets": "attention"},
             [*({"method": ["lora", "pissa"], "method.r": r, "method.alpha": r} for r in (4, 8, 16, 32, 64, 128)),
              {"method": "speft", "salience": "gradient", "method.match_lora_rank": [4, 8, 16, 32, 64, 128]}],
             note="Gemma2-2b on MetaMathQA (100k), GSM8K CoT 5-shot; LoRA alpha = r as the paper"),
        Grid({**SPEFT_CPU, "method.target_modules": "[query,value]"},
             [*({"method": "lora", "method.r": r, "method.alpha": r} for r in (2, 8, 32)),
              {"method": "speft", "salience": "gradient", "method.match_lora_rank": [2, 8, 32]}],
             ("glue/sst2", "glue/mrpc"), note="MiniLM-L6 on SST-2 / MRPC (no CPU-sized math model): the budget trend "
                                              "only; LoRA alpha = r as the paper"),
        cost="18 runs, Gemma2-2b 1 epoch of 100k examples: ~200 GPU-hours"),
    "spp-table2": PaperTable(
        "zero-shot lm-eval after one-shot pruning, with and without SPP (50 %, 2:4)", "spp-table2",
        _pruner_grid(SPP_PAPER, [UNSTRUCTURED_50, TWO_FOUR], [PRUNED_ONLY, {}], LLAMA),
        _pruner_grid(SPP_CPU, [UNSTRUCTURED_50, TWO_FOUR], [PRUNED_ONLY, {}],
                     note="SmolLM2-135M for LLaMA; 5 of the 7 tasks (no HellaSwag file offline; the local BoolQ "
                          "lacks its passages: skipped, recorded), 100 documents each; SPP 40 steps on 100 Alpaca rows"),
        cost="9 runs x 4 models (7B-65B): ~1,000 GPU-hours, most of it 65B"),
    "spp-table3": PaperTable(
        "75 % sparsity (unstructured, 2:8): LM-eval average and WikiText-2 perplexity", "spp-table3",
        _with_runs(_pruner_grid(SPP_PAPER, SEVENTY_FIVE, [PRUNED_ONLY, {}], ["spp-alpaca-llama7b", "spp-alpaca-llama30b"]),
                   [{"experiment": ["spp-alpaca-llama7b", "spp-alpaca-llama30b"], **DSNOT_PRUNED, **p} for p in SEVENTY_FIVE]),
        _with_runs(_pruner_grid(SPP_CPU, SEVENTY_FIVE, [PRUNED_ONLY, {}], note="SmolLM2-135M, as spp-table2; + Wanda+DSnoT"),
                   [{**DSNOT_PRUNED, **p} for p in SEVENTY_FIVE]),
        cost="11 runs x 2 models (7B, 30B): ~170 GPU-hours"),
    "spp-table4": PaperTable(
        "SPP ablations: zero-init, W_beta, r", "spp-table4",
        Grid({**SPP_PAPER, "experiment": "spp-alpaca-llama7b", "method": "spp"},
             [{**p, "salience": ["wanda", "sparsegpt"]} for p in (
                 {**UNSTRUCTURED_50, "method.r": [4, 8, 16]}, {**TWO_FOUR, "method.r": [4, 8, 16]},
                 {**UNSTRUCTURED_50, "method.use_beta": False, "method.zero_init": "alpha"},
                 {**UNSTRUCTURED_50, "method.zero_init": "none"})]),
        Grid({**SPP_CPU, "method": "spp", "salience": "wanda"},
             [{**UNSTRUCTURED_50, "method.r": [4, 8, 16]}, {**UNSTRUCTURED_50, "method.use_beta": False, "method.zero_init": "alpha"},
              {**UNSTRUCTURED_50, "method.zero_init": ["none", "alpha"]}],
             note="SmolLM2-135M, Wanda 50 % only"),
        cost="16 runs, LLaMA-7B: ~50 GPU-hours"),
    "spp-table5": PaperTable(
        "75 % sparsity: Wanda + LoRA* vs Wanda + SPP", "spp-table5",
        Grid({**SPP_PAPER, "salience": "wanda"},
             [{"experiment": ["spp-alpaca-llama7b", "spp-alpaca-llama30b"], "method": ["lora_star", "spp"], **p}
              for p in SEVENTY_FIVE]),
        Grid({**SPP_CPU, "salience": "wanda"}, [{"method": ["lora_star", "spp"], **p} for p in SEVENTY_FIVE],
             note="SmolLM2-135M"),
        cost="4 runs x 2 models (7B, 30B): ~60 GPU-hours"),
    "spp-figure1": PaperTable(
        "75 % sparsity: Wanda, Wanda + DSnoT, Wanda + LoRA*, Wanda + SPP (LM-eval score; perplexity)", None,
        Grid({**SPP_PAPER, "salience": "wanda"},
             [{"experiment": ["spp-alpaca-llama7b", "spp-alpaca-llama30b"], **v, **p}
              for v in SPP_FIGURE1 for p in SEVENTY_FIVE]),
        Grid({**SPP_CPU, "salience": "wanda"}, [{**v, **p} for v in SPP_FIGURE1 for p in SEVENTY_FIVE],
             note="SmolLM2-135M, as spp-table2 (the LoRA* / SPP runs are spp-table5's, the pruned-only ones spp-table3's)"),
        cost="8 runs x 2 models (7B, 30B); its runs are SPP Tables 3 and 5's: ~80 GPU-hours if run alone"),
    "spp-table6": PaperTable(
        "5-shot MMLU after one-shot pruning, with and without SPP", "spp-table6",
        _pruner_grid({**SPP_PAPER, "eval": "mmlu"}, [UNSTRUCTURED_50, TWO_FOUR], [PRUNED_ONLY, {}], LLAMA + LLAMA2),
        _pruner_grid(SPP_MMLU_CPU, [UNSTRUCTURED_50, TWO_FOUR], [PRUNED_ONLY, {}],
                     note="SmolLM2-135M for LLaMA / LLaMA-2, as spp-table2 but scored on MMLU 5-shot: 1 question per "
                          "subject (57; a 135M model sits near chance, 25 %, on MMLU, one standard error ~6 points)"),
        cost="9 runs x 7 models (LLaMA 7B-65B, LLaMA-2 7B-70B): ~2,000 GPU-hours"),
    "spp-table7": PaperTable(
        "LLaMA-2: zero-shot lm-eval after one-shot pruning, with and without SPP", "spp-table7",
        _pruner_grid(SPP_PAPER, [UNSTRUCTURED_50, TWO_FOUR], [PRUNED_ONLY, {}], LLAMA2),
        None, cost="9 runs x 3 models (7B, 13B, 70B): ~800 GPU-hours",
        missing="the CPU miniature is spp-table2's (one small model stands in for both families)"),
    "spp-table8": PaperTable(
        "SPP zero-initialisation ablation", "spp-table8",
        Grid({**SPP_PAPER, "experiment": "spp-alpaca-llama7b", "method": "spp"},
             [{**p, "salience": ["wanda", "sparsegpt"], "method.zero_init": ["none", "alpha", "beta"]}
              for p in (UNSTRUCTURED_50, TWO_FOUR)]),
        None, cost="12 runs, LLaMA-7B: ~40 GPU-hours", missing="the CPU miniature is part of spp-table4's"),
}
