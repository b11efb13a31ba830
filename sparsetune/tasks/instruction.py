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
The steps after the prompt / target pairs (carving, subsets, tokenization) are `instruction_data`, which
task=codefeedback and task=oasst2 share.
"""
from __future__ import annotations

from datasets import Dataset

from ..errors import ConfigError
from ..registry import TASK_LOADERS
from .arrow_cache import cached_map, file_dataset, text_features
from .base import TaskData
from .causal_lm import carve_validation, collator_for, first_rows, subset_train, task_options, tokenize_prompt_target, wants_bos
from .instruction_files import check_rows, local_splits
from .local_files import hub_splits
from .rows import Rows

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


COLUMNS = ("instruction", "input", "output")
TEXT = ("string", "large_string")


def checked(raw: Rows | Dataset, source: str = "") -> Dataset:
    """A split's rows with instruction / input / output as a Dataset; a row without them is a DataError naming
    it. A local file is checked row by row (the CLI's preflight has done so already) and loaded by datasets."""
    if not isinstance(raw, Dataset):
        check_rows(raw, source)
        return file_dataset(raw, text_features(COLUMNS))
    if not says_text(raw):
        check_rows(list(raw), source)  # find and name the row that has no text
    return raw


def says_text(ds: Dataset) -> bool:
    """Whether the column types alone say that every row has text in instruction / output (and in input, or nothing)."""
    kind = lambda c: getattr(ds.features.get(c), "dtype", None)
    required = all(kind(c) in TEXT and ds.data.column(c).null_count == 0 for c in ("instruction", "output"))
    return required and kind("input") in (*TEXT, "null", None)


def to_pairs(ds: Dataset) -> Dataset:
    """Rows with instruction / input / output -> {prompt, target}."""
    def fill(batch):
        inputs = batch["input"] if "input" in batch else [None] * len(batch["instruction"])
        return {"prompt": [alpaca_prompt(i, x) for i, x in zip(batch["instruction"], inputs)], "target": batch["output"]}

    return cached_map(ds, fill, batched=True, remove_columns=ds.column_names, desc="format")


def raw_splits(task) -> tuple[dict[str, Rows | Dataset], str]:
    local = local_splits(task)  # the CLI's data preflight has read and checked these already
    if local is not None:
        return local
    return {"train": hub_splits(task.hub_id, task.hub_config, ["train"], "task.data_files={train: alpaca.json}")["train"]}, \
        f"hub {task.hub_id}"


@TASK_LOADERS.register("alpaca")
def load_alpaca(task, tokenizer, seed: int) -> TaskData:
    opts = task_options(task, DEFAULTS)
    eval_name = one_eval_split(task)
    raw, source = raw_splits(task)
    pairs = {split: to_pairs(checked(raw[split], source)) for split in (task.train_split, eval_name) if split in raw}
    bos = wants_bos(tokenizer, opts["add_bos"])
    return instruction_data(task, tokenizer, seed, opts, pairs, bos=bos, eos=bool(opts["add_eos"]),
                            info={"source": source, "prompt_template": "stanford_alpaca"})


def one_eval_split(task) -> str:
    if len(task.eval_splits) != 1:
        raise ConfigError(f"task.eval_splits={list(task.eval_splits)}: task {task.name!r} has one eval split "
                          "(a file or carved from train)")
    return task.eval_splits[0]


def languages_option(value, example: str) -> set[str] | None:
    """task.options.languages: null (all) or a non-empty list of names, e.g. [en, de] or [python]."""
    if value is None:
        return None
    if isinstance(value, str) or not len(value) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"task.options.languages={value!r}: a non-empty list (e.g. {example}) or null")
    return set(value)


def instruction_data(task, tokenizer, seed: int, opts: dict, pairs: dict[str, Dataset], *, bos: bool, eos: bool,
                     info: dict) -> TaskData:
    """An instruction task's tokenized data from its {split: prompt / target} datasets (alpaca, codefeedback,
    oasst2): without an eval split, options.val_set_size rows are carved from train with options.split_seed;
    max_train_samples (options.train_subset) and max_eval_samples applied; loss on the target unless
    options.train_on_inputs."""
    eval_name = one_eval_split(task)
    train = pairs[task.train_split]
    if eval_name in pairs:
        evals, carved = pairs[eval_name], None
    else:
        train, evals = carve_validation(train, opts["val_set_size"], int(opts["split_seed"]))
        carved = {"size": opts["val_set_size"], "seed": opts["split_seed"]}
    train = subset_train(train, task.max_train_samples, seed, opts["train_subset"])
    evals = first_rows(evals, task.max_eval_samples)
    enc = lambda ds: tokenize_prompt_target(ds, tokenizer, task.max_length, train_on_inputs=bool(opts["train_on_inputs"]),
                                            bos=bos, eos=eos)
    train_ds, dropped_train = enc(train)
    eval_ds, dropped_eval = enc(evals)
    return TaskData(
        train=train_ds, eval={eval_name: eval_ds}, collator=collator_for(tokenizer), compute_metrics=None,
        info={"source": info["source"], "train_split": task.train_split, "eval_splits": [eval_name], "eval_carved_from_train": carved,
              "num_train": len(train_ds), "num_eval": {eval_name: len(eval_ds)}, "max_length": task.max_length,
              **{k: v for k, v in info.items() if k != "source"}, "train_on_inputs": bool(opts["train_on_inputs"]),
              "bos": bos, "eos": eos, "dropped_without_target": {"train": dropped_train, eval_name: dropped_eval}},
    )
