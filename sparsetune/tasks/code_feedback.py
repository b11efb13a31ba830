"""task=codefeedback: instruction tuning on CodeFeedback (SPEFT Table 12: Llama3-8B, then HumanEval / MBPP).

Prompt = the query in Stanford Alpaca's no-input template (as the math tasks, after MetaMath / PiSSA),
target = the answer + EOS, loss on the answer unless options.train_on_inputs. options.languages keeps
the rows whose `lang` is one of them, case-insensitively (null = all; PiSSA's code subset is [python]).

Sources: the hub (m-a-p/CodeFeedback-Filtered-Instruction, train only) or task.data_files={train: ..[,
validation: ..]} with the hub's columns (.jsonl / .json / .parquet), loaded lazily (lazy_files.py).
Without a validation file, options.val_set_size rows are carved from train (seeded).
"""
from __future__ import annotations

from datasets import Dataset

from ..errors import ConfigError
from ..registry import TASK_LOADERS
from .arrow_cache import cached_filter, cached_map, text_features
from .base import TaskData
from .causal_lm import task_options, wants_bos
from .code_feedback_files import LAYOUT, OPTIONAL, REQUIRED, check_rows
from .instruction import alpaca_prompt, instruction_data, languages_option, one_eval_split
from .lazy_files import lazy_dataset
from .local_files import hub_splits, local_paths

DEFAULTS = {"languages": None, "train_on_inputs": False, "val_set_size": 1000, "split_seed": 42, "add_bos": "auto",
            "add_eos": True, "train_subset": "random"}


def raw_splits(task, splits: list[str]) -> tuple[dict[str, Dataset], str]:
    paths = local_paths(task, LAYOUT)
    if paths is None:
        return hub_splits(task.hub_id, task.hub_config, [task.train_split], "task.data_files={train: codefeedback.jsonl}"), \
            f"hub {task.hub_id}"
    if task.train_split not in paths:
        raise ConfigError(f"task.data_files / task.data_dir must provide the train split {task.train_split!r} "
                          f"(data_dir file name: {LAYOUT['train']})")
    features = text_features((*REQUIRED, *OPTIONAL))
    out = {s: lazy_dataset(p, features, REQUIRED, check_rows) for s, p in paths.items() if s in splits}
    return out, f"files {({s: str(p) for s, p in paths.items() if s in splits})}"


def keep_languages(ds: Dataset, languages: set[str] | None) -> Dataset:
    """The rows whose `lang` is one of `languages`, case-insensitively (None: all)."""
    if languages is None:
        return ds
    if "lang" not in ds.column_names:
        raise ConfigError("task.options.languages needs a 'lang' column in the CodeFeedback rows")
    wanted = {v.lower() for v in languages}
    kept = cached_filter(ds, lambda langs: [(lang or "").lower() in wanted for lang in langs], batched=True,
                         input_columns="lang", desc="keep languages")
    if not len(kept):
        raise ConfigError(f"no CodeFeedback rows in task.options.languages={sorted(languages)}")
    return kept


def to_pairs(ds: Dataset) -> Dataset:
    """Rows with query / answer -> {prompt, target}."""
    fill = lambda batch: {"prompt": [alpaca_prompt(q) for q in batch["query"]], "target": batch["answer"]}
    return cached_map(ds, fill, batched=True, remove_columns=ds.column_names, desc="format")


@TASK_LOADERS.register("codefeedback")
def load_codefeedback(task, tokenizer, seed: int) -> TaskData:
    opts = task_options(task, DEFAULTS)
    eval_name = one_eval_split(task)
    languages = languages_option(opts["languages"], "[python]")
    bos = wants_bos(tokenizer, opts["add_bos"])
    raw, source = raw_splits(task, [task.train_split, eval_name])
    pairs = {split: to_pairs(keep_languages(ds, languages)) for split, ds in raw.items()}
    return instruction_data(task, tokenizer, seed, opts, pairs, bos=bos, eos=bool(opts["add_eos"]), info={
        "source": source, "prompt_template": "stanford_alpaca (no input)", "languages": sorted(languages) if languages else None})
