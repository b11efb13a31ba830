"""task=gsm8k (train + test on GSM8K) and task=metamathqa (train on MetaMathQA, test on GSM8K; SPEFT).

Training sequence: the question in a prompt template + the worked answer + EOS, loss on the answer.
  - train_prompt=alpaca (default): Alpaca's no-input template, the format MetaMath trains and tests with
    (and SPEFT's PiSSA-derived math script);
  - train_prompt=qa: lm-eval gsm8k's "Question: ..\\nAnswer:" layout.
GSM8K answers keep their "<<48/2=24>>" calculator notes and the final "#### N"; MetaMathQA responses end
in "The answer is: N".

Evaluation (extras["evaluators"]["gsm8k"]): greedy generation on the first options.eval_examples GSM8K
test questions, scored by strict and flexible number match (see math_answers.py).
  - eval_prompt=train: zero-shot, the training template;
  - eval_prompt=cot: lm-eval gsm8k_cot's few-shot chain-of-thought prompt with options.num_fewshot
    exemplars (SPEFT reports gsm8k_cot 5-shot).
The eval loss (data.eval) is on GSM8K test in the training template.

Sources: task.data_files={train: .., test: ..} (.json/.jsonl/.parquet; GSM8K rows {question, answer},
MetaMathQA rows {query, response}) or task.data_dir with the file names in LAYOUTS, else the hub (openai/gsm8k
main, meta-math/MetaMathQA). A local MetaMathQA file is loaded lazily (lazy_files.py: Arrow, not Python lists).
"""
from __future__ import annotations

from functools import partial

from datasets import Dataset

from ..errors import ConfigError
from ..registry import TASK_LOADERS
from .arrow_cache import cached_map, file_dataset, text_features
from .base import TaskData
from .causal_lm import collator_for, first_rows, prompt_ids, subset_train, task_options, tokenize_prompt_target, wants_bos
from .generate import generate, settings
from .instruction import alpaca_prompt
from .lazy_files import lazy_dataset
from .local_files import hub_splits, local_paths
from .math_answers import cot_exemplars, cot_prompt, flexible_answer, gold_answer, same_number, strict_answer
from .math_files import LAYOUTS, TEST_COLUMNS, TRAIN_COLUMNS, check_pairs, check_splits, lazy_split, local_split

GSM8K_HUB = ("openai/gsm8k", "main")
DEFAULTS = {
    "train_prompt": "alpaca", "eval_prompt": "train", "num_fewshot": 8, "eval_examples": None, "max_new_tokens": 256,
    "eval_batch_size": 8, "stop": None, "num_samples": 3, "train_on_inputs": False, "add_bos": "auto", "add_eos": True,
    "train_subset": "random",
}
STOPS = {"alpaca": ["### Instruction:", "</s>", "<|im_end|>"], "qa": ["Question:", "</s>", "<|im_end|>"],
         "cot": ["Q:", "</s>", "<|im_end|>"]}  # cot = lm-eval gsm8k_cot's `until`


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


def gsm8k_evaluator(rows: list[dict], opts: dict, bos: bool):
    """extras evaluator: greedy generation + strict / flexible exact match on GSM8K rows."""
    style = opts["eval_prompt"]
    if style not in ("train", "cot"):
        raise ConfigError(f"task.options.eval_prompt={style!r}; allowed: train, cot")
    shots = cot_exemplars(int(opts["num_fewshot"])) if style == "cot" else []
    stop = list(opts["stop"]) if opts["stop"] is not None else STOPS["cot" if style == "cot" else opts["train_prompt"]]
    gen = settings({**opts, "num_beams": 1, "stop": stop})
    rows = rows[: opts["eval_examples"]] if opts["eval_examples"] else rows
    golds = [gold_answer(r["answer"]) for r in rows]

    def evaluate(model, tokenizer, cfg) -> dict:
        texts = [cot_prompt(r["question"], shots) if style == "cot" else question_prompt(r["question"], opts["train_prompt"])
                 for r in rows]
        outputs = generate(model, tokenizer, [prompt_ids(tokenizer, t, bos) for t in texts], gen)
        strict = [same_number(strict_answer(o), g) for o, g in zip(outputs, golds)]
        flexible = [same_number(flexible_answer(o), g) for o, g in zip(outputs, golds)]
        return {
            "strict_match": sum(strict) / len(rows), "flexible_extract": sum(flexible) / len(rows), "num_examples": len(rows),
            "prompt": style if style == "cot" else f"train ({opts['train_prompt']}, zero-shot)",
            "num_fewshot": len(shots), "decoding": {**gen, "strategy": "greedy"},
            "samples": [{"question": r["question"], "output": o, "gold": str(g)}
                        for r, o, g in list(zip(rows, outputs, golds))[: int(opts["num_samples"])]],
        }

    return evaluate


def build(task, tokenizer, seed: int, train: Dataset, train_cols: tuple[str, str], test: Dataset, source: dict,
          opts: dict) -> TaskData:
    style = opts["train_prompt"]
    question_prompt("", style)  # validates the style before any tokenization
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
        extras={"evaluators": {"gsm8k": gsm8k_evaluator(test.select_columns(["question", "answer"]).to_list(), opts, bos)}},
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
