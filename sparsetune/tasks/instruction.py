"""task=alpaca: instruction tuning on Stanford Alpaca (SPP, SPEFT's MMLU runs).

Prompt = the exact Stanford Alpaca template (with / without input), target = the response + EOS.
`train_on_inputs` decides whether the prompt tokens are in the loss:
  - false (our default): loss on the response only, as Stanford Alpaca's train.py and SPEFT's QLoRA-style
    script (train_on_source=False) do;
  - true: loss on the whole sequence, SPP's reference default (alpaca-lora's train_on_inputs=True).
The choice is recorded in results.json (data.train_on_inputs). Padding is never in the loss.

Sources: task.data_files={train: x.json|jsonl[, validation: y]} or task.data_dir/alpaca_data.json, with
the hub's columns (instruction, input, output), else the hub (tatsu-lab/alpaca). Without a validation
file, options.val_set_size rows are carved from train with options.split_seed (alpaca-lora: 2000, seed 42).
"""
from __future__ import annotations

from datasets import Dataset

from ..errors import ConfigError
from ..registry import TASK_LOADERS
from .base import TaskData
from .causal_lm import carve_validation, collator_for, first_rows, subset_train, task_options, tokenize_prompt_target, wants_bos
from .instruction_files import check_rows, local_splits
from .local_files import hub_splits

PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
DEFAULTS = {"train_on_inputs": False, "val_set_size": 2000, "split_seed": 42, "add_bos": "auto", "add_eos": True,
            "train_subset": "random"}


def alpaca_prompt(instruction: str, input: str | None = "") -> str:
    """Stanford Alpaca's prompt; an empty or missing input selects the no-input template."""
    if input:
        return PROMPT_INPUT.format(instruction=instruction, input=input)
    return PROMPT_NO_INPUT.format(instruction=instruction)


def to_pairs(rows, source: str = "") -> Dataset:
    """Rows with instruction / input / output -> {prompt, target}; a row without them is a DataError naming it."""
    rows = rows.to_list() if isinstance(rows, Dataset) else rows
    check_rows(rows, source)
    return Dataset.from_list([{"prompt": alpaca_prompt(r["instruction"], r.get("input")), "target": r["output"]} for r in rows])


def raw_splits(task) -> tuple[dict[str, Dataset], str]:
    local = local_splits(task)  # the CLI's data preflight has read and checked these already
    if local is not None:
        return local
    return {"train": hub_splits(task.hub_id, task.hub_config, ["train"], "task.data_files={train: alpaca.json}")["train"]}, \
        f"hub {task.hub_id}"


@TASK_LOADERS.register("alpaca")
def load_alpaca(task, tokenizer, seed: int) -> TaskData:
    opts = task_options(task, DEFAULTS)
    if len(task.eval_splits) != 1:
        raise ConfigError(f"task.eval_splits={list(task.eval_splits)}: alpaca has one eval split (a file or carved from train)")
    raw, source = raw_splits(task)
    train = to_pairs(raw[task.train_split], source)
    eval_name = task.eval_splits[0]
    if eval_name in raw:
        evals, carved = to_pairs(raw[eval_name], source), None
    else:
        train, evals = carve_validation(train, opts["val_set_size"], int(opts["split_seed"]))
        carved = {"size": opts["val_set_size"], "seed": opts["split_seed"]}
    train = subset_train(train, task.max_train_samples, seed, opts["train_subset"])
    evals = first_rows(evals, task.max_eval_samples)
    bos = wants_bos(tokenizer, opts["add_bos"])
    enc = lambda ds: tokenize_prompt_target(ds, tokenizer, task.max_length, train_on_inputs=bool(opts["train_on_inputs"]),
                                            bos=bos, eos=bool(opts["add_eos"]))
    train_ds, dropped_train = enc(train)
    eval_ds, dropped_eval = enc(evals)
    return TaskData(
        train=train_ds, eval={eval_name: eval_ds}, collator=collator_for(tokenizer), compute_metrics=None,
        info={"source": source, "train_split": task.train_split, "eval_splits": [eval_name], "eval_carved_from_train": carved,
              "num_train": len(train_ds), "num_eval": {eval_name: len(eval_ds)}, "max_length": task.max_length,
              "prompt_template": "stanford_alpaca", "train_on_inputs": bool(opts["train_on_inputs"]), "bos": bos,
              "eos": bool(opts["add_eos"]), "dropped_without_target": {"train": dropped_train, eval_name: dropped_eval}},
    )
