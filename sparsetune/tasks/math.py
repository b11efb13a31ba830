"""task=gsm8k (train + test on GSM8K) and task=metamathqa (train on MetaMathQA, test on GSM8K; SPEFT).

Training sequence: the question in a prompt template + the worked answer + EOS, loss on the answer.
  - train_prompt=alpaca (default): Alpaca's no-input template, the format MetaMath trains and tests with
    (and SPEFT's PiSSA-derived math script);
  - train_prompt=qa: lm-eval gsm8k's "Question: ..\\nAnswer:" layout.
GSM8K answers keep their "<<48/2=24>>" calculator notes and the final "#### N"; MetaMathQA responses end
in "The answer is: N".

Evaluation (extras["evaluators"]["gsm8k"], evaluation/gsm8k.py): lm-eval's own GSM8K task on the task's GSM8K
test file (the hub's without one), on its first options.eval_examples questions; metrics.gsm8k holds lm-eval's
strict_match and flexible_extract.
  - eval_prompt=qa: lm-eval gsm8k ("Question: .. Answer:", examples from GSM8K train: task=gsm8k's train file);
  - eval_prompt=cot: lm-eval gsm8k_cot (chain-of-thought exemplars; SPEFT reports it 5-shot).
options.num_fewshot null = lm-eval's default (gsm8k 5, gsm8k_cot 8). The eval loss (data.eval) is on GSM8K
test in the training template.

Sources: task.data_files={train: .., test: ..} (.json/.jsonl/.parquet; GSM8K rows {question, answer},
MetaMathQA rows {query, response}) or task.data_dir with the file names in LAYOUTS, else the hub (openai/gsm8k
main, meta-math/MetaMathQA). A local MetaMathQA file is loaded lazily (lazy_files.py: Arrow, not Python lists).
"""
from __future__ import annotations

from functools import partial

from datasets import Dataset

from ..errors import ConfigError
from ..evaluation.gsm8k import gsm8k_evaluator, lm_eval_task
from ..registry import TASK_LOADERS
from .arrow_cache import cached_map, file_dataset, text_features
from .base import TaskData
from .causal_lm import collator_for, first_rows, subset_train, task_options, tokenize_prompt_target, wants_bos
from .instruction import alpaca_prompt
from .lazy_files import lazy_dataset
from .local_files import hub_splits, local_paths
from .math_files import LAYOUTS, TEST_COLUMNS, TRAIN_COLUMNS, check_pairs, check_splits, lazy_split, local_split

GSM8K_HUB = ("openai/gsm8k", "main")
DEFAULTS = {
    "train_prompt": "alpaca", "eval_prompt": "qa", "num_fewshot": None, "eval_examples": None, "max_new_tokens": None,
    "eval_batch_size": 8, "train_on_inputs": False, "add_bos": "auto", "add_eos": True, "train_subset": "random",
}


def question_prompt(question: str, style: str) -> str:
    if style == "alpaca":
        return alpaca_prompt(question)
    if style == "qa":
        return f"Question: {question}\nAnswer:"
    raise ConfigError(f"task.options.train_prompt={style!r}; allowed: alpaca, qa")


def pairs(ds: Dataset, question: str, answer: str, style: str) -> Dataset:
    """Rows -> {prompt, target}; qa answers get the space lm-eval puts after 'Answer:'."""
    missing = {question, answer} - set(ds.column_names)
    if missing:
        raise ConfigError(f"rows need the columns {question!r} and {answer!r}; missing {sorted(missing)} (have {ds.column_names})")
    lead = " " if style == "qa" else ""
    return cached_map(ds, lambda r: {"prompt": question_prompt(r[question], style), "target": lead + r[answer]},
                      remove_columns=ds.column_names, desc="format")


def load_splits(task, hubs: dict[str, tuple[str, str | None, str]]) -> tuple[dict[str, Dataset], dict[str, str]]:
    """Each split from its local file when one is given (checked row by row: math_files.py, then loaded by
    datasets; a large one lazily, checked on its Arrow columns), else from (hub id, config, hub split)."""
    layout = LAYOUTS[task.loader]
    paths = local_paths(task, layout) or {}
    out, where = {}, {}
    for split, (hub_id, config, hub_split) in hubs.items():
        if split in paths:
            columns = TRAIN_COLUMNS[task.loader] if split == "train" else TEST_COLUMNS
            if lazy_split(task, split):
                out[split] = lazy_dataset(paths[split], text_features(columns), columns, partial(check_pairs, columns=columns))
            else:
                out[split] = file_dataset(local_split(task, split, paths[split]), text_features(columns))
            where[split] = str(paths[split])
        else:
            local = f"task.data_files.{split} (or task.data_dir/{layout[split]})"
            out[split] = hub_splits(hub_id, config, [hub_split], local)[hub_split]
            where[split] = f"hub {hub_id}" + (f"/{config}" if config else "") + f" split {hub_split}"
    return out, where


def gsm8k_files(task, opts: dict) -> dict[str, str]:
    """The local GSM8K files lm-eval's task reads: test, and train when lm-eval gsm8k takes examples from it."""
    paths = local_paths(task, LAYOUTS[task.loader]) or {}
    files = {"test": str(paths["test"])} if "test" in paths else {}
    if not files or lm_eval_task(opts["eval_prompt"]) != "gsm8k" or opts["num_fewshot"] == 0:
        return files
    if task.loader != "gsm8k" or "train" not in paths:
        raise ConfigError(f"task {task.name!r}: eval_prompt=qa is lm-eval gsm8k, whose few-shot examples come from GSM8K "
                          "train, and this task has no local GSM8K train file; use eval_prompt=cot or num_fewshot=0")
    return {**files, "train": str(paths["train"])}


def build(task, tokenizer, seed: int, train: Dataset, train_cols: tuple[str, str], test: Dataset, source: dict,
          opts: dict) -> TaskData:
    style = opts["train_prompt"]
    question_prompt("", style)  # validates the styles and the eval files before any tokenization
    evaluator = gsm8k_evaluator(gsm8k_files(task, opts), opts)
    bos = wants_bos(tokenizer, opts["add_bos"])
    train = subset_train(train, task.max_train_samples, seed, opts["train_subset"])
    test_eval = first_rows(test, task.max_eval_samples)
    enc = lambda ds: tokenize_prompt_target(ds, tokenizer, task.max_length, train_on_inputs=bool(opts["train_on_inputs"]),
                                            bos=bos, eos=bool(opts["add_eos"]))
    train_ds, dropped_train = enc(pairs(train, *train_cols, style))
    eval_ds, dropped_eval = enc(pairs(test_eval, "question", "answer", style))
    split = task.eval_splits[0]
    return TaskData(
        train=train_ds, eval={split: eval_ds}, collator=collator_for(tokenizer), compute_metrics=None,
        info={"source": source, "train_split": task.train_split, "eval_splits": [split], "num_train": len(train_ds),
              "num_eval": {split: len(eval_ds)}, "max_length": task.max_length, "train_prompt": style,
              "train_on_inputs": bool(opts["train_on_inputs"]), "bos": bos, "eos": bool(opts["add_eos"]),
              "train_subset": opts["train_subset"], "dropped_without_target": {"train": dropped_train, split: dropped_eval}},
        extras={"evaluators": {"gsm8k": evaluator}},
    )


@TASK_LOADERS.register("gsm8k")
def load_gsm8k(task, tokenizer, seed: int) -> TaskData:
    opts = task_options(task, DEFAULTS)
    check_splits(task)
    raw, source = load_splits(task, {s: (task.hub_id, task.hub_config, s) for s in ("train", "test")})
    return build(task, tokenizer, seed, raw["train"], TRAIN_COLUMNS["gsm8k"], raw["test"], source, opts)


@TASK_LOADERS.register("metamathqa")
def load_metamathqa(task, tokenizer, seed: int) -> TaskData:
    opts = task_options(task, {**DEFAULTS, "train_subset": "first"})
    check_splits(task)
    raw, source = load_splits(task, {"train": (task.hub_id, task.hub_config, "train"), "test": (*GSM8K_HUB, "test")})
    return build(task, tokenizer, seed, raw["train"], TRAIN_COLUMNS["metamathqa"], raw["test"], source, opts)
