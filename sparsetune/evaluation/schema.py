"""Typed schema of the `eval` config group (register as `schema/eval`, name `base`).

`num_fewshot` and `limit` are `Any` because both take an int for every task or a {task: int} mapping, and
`files` values a path or a {split: path} mapping; `evaluate_suite` checks them before anything runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PerplexityConfig:
    enabled: bool = False
    data_file: str | None = None  # None: <eval.data_dir>/wikitext-2-raw/test.hf_rows.txt
    fmt: str = "auto"  # auto | hf_rows | jsonl | json | text (see sparsetune.evaluation.perplexity.read_texts)
    seqlen: int = 2048  # Wanda / SparseGPT use the model's context (2048 for LLaMA-1)
    max_chunks: int | None = None  # CPU-sized runs: score only the first chunks
    batch_size: int = 1


@dataclass
class EvalConfig:
    name: str = "none"
    tasks: list[str] = field(default_factory=list)  # lm-eval task names (arc_easy, mmlu, gsm8k_cot, ...)
    data_dir: str | None = None  # local data root (commonsense/, mmlu/, glue/RTE/, gsm8k/, ...); None: the hub
    # task -> its eval-split file, a folder standing in for its data_dir folder (mmlu: a hendrycks dir),
    # or {split: file} (e.g. {test: .., train: ..} for few-shot examples from a train file)
    files: dict[str, Any] = field(default_factory=dict)
    num_fewshot: Any = None  # null: each task's lm-eval default; int, or {task: int} (tasks not named: their default)
    limit: Any = None  # None, int, or {task: int}: documents per leaf task (MMLU has 57 leaf tasks)
    batch_size: int = 1  # set on HFLM: simple_evaluate's batch_size is ignored for a prebuilt model
    max_length: int | None = None  # cap on context tokens (never above the model's positions); None: lm-eval's
    # own choice, the model's max_position_embeddings (8192 for SmolLM2; longer prompts are left-truncated)
    max_gen_toks: int | None = None  # generation tasks (gsm8k): new-token cap (lm-eval's gen_kwargs); None: 256
    seed: int = 1234  # lm-eval's default seeds (python / numpy / torch / few-shot sampler)
    strict: bool = False  # true: a task without usable local data raises instead of being skipped
    allow_code_execution: bool = False  # humaneval / mbpp run the model's programs here: an explicit opt-in
    work_dir: str | None = None  # local dataset copies + their task YAMLs, datasets cache; None: <paths.cache_dir>/lm_eval_local
    perplexity: PerplexityConfig = field(default_factory=PerplexityConfig)
