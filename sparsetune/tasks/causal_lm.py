"""Shared pieces of the causal-LM tasks: (prompt, target) tokenization with the loss on the target only,
the padding collator (transformers' DataCollatorForSeq2Seq), loader options, and the train/eval subsets.

A training sequence is  [BOS?] prompt target [EOS]  with prompt and target tokenized separately and
concatenated, so the boundary between them is exact (tokenizing the joined string and re-tokenizing the
prompt alone, as alpaca-lora and Stanford Alpaca do, can disagree by a token at the seam). Labels are
-100 on the BOS/prompt (unless train_on_inputs) and on padding; the model shifts them itself.
"""
from __future__ import annotations

import copy
import logging

from datasets import Dataset
from transformers import DataCollatorForSeq2Seq

from ..errors import ConfigError
from .arrow_cache import cached_filter, cached_map

IGNORE_INDEX = -100
log = logging.getLogger(__name__)


def task_options(task, defaults: dict) -> dict:
    """task.options merged over the loader's defaults; an unknown key is an error naming the allowed ones."""
    given = dict(task.options or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"task.options has unknown key(s) {unknown} for task {task.name!r}; allowed: {sorted(defaults)}")
    return {**defaults, **given}


def wants_bos(tokenizer, add_bos) -> bool:
    """add_bos: true | false | 'auto' (= whatever the tokenizer itself does for a plain call)."""
    if add_bos not in (True, False, "auto"):
        raise ConfigError(f"task.options.add_bos={add_bos!r}; allowed: true, false, auto")
    bos = tokenizer.bos_token_id
    if add_bos == "auto":
        return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]
    if add_bos and bos is None:
        raise ConfigError("task.options.add_bos=true but the tokenizer has no BOS token; use add_bos=false")
    return bool(add_bos)


def prompt_ids(tokenizer, prompt: str, bos: bool) -> list[int]:
    """The token ids generation starts from; identical to the prompt part of a training sequence."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return [tokenizer.bos_token_id, *ids] if bos else ids


def join_example(prompt: list[int], target: list[int], max_length: int, train_on_inputs: bool) -> dict:
    """input_ids / attention_mask / labels for prompt + target, cut from the right at max_length."""
    ids = (prompt + target)[:max_length]
    labels = list(ids) if train_on_inputs else ([IGNORE_INDEX] * len(prompt) + target)[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def tokenize_prompt_target(ds: Dataset, tokenizer, max_length: int, *, train_on_inputs: bool, bos: bool,
                   eos: bool = True) -> tuple[Dataset, int]:
    """Tokenize a dataset with `prompt` and `target` columns. Examples whose target was cut away entirely
    are dropped (an all -100 batch has no loss); returns (dataset, number dropped)."""
    if eos and tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no EOS token; set task.options.add_eos=false")

    def encode(batch):
        prompts = tokenizer(batch["prompt"], add_special_tokens=False)["input_ids"]
        targets = tokenizer(batch["target"], add_special_tokens=False)["input_ids"]
        rows = [join_example(([tokenizer.bos_token_id] if bos else []) + p, t + ([tokenizer.eos_token_id] if eos else []),
                             max_length, train_on_inputs) for p, t in zip(prompts, targets)]
        return {k: [r[k] for r in rows] for k in ("input_ids", "attention_mask", "labels")}

    enc = cached_map(ds, encode, batched=True, remove_columns=ds.column_names, desc="tokenize")
    kept = cached_filter(enc, lambda ex: any(lab != IGNORE_INDEX for lab in ex["labels"]), desc="drop examples without target")
    if len(enc) and not len(kept):
        raise ConfigError(f"all {len(enc)} examples lost their target to truncation at task.max_length={max_length}; raise it")
    if len(kept) < len(enc):
        log.warning("dropped %d of %d examples whose target was cut away at task.max_length=%d (recorded in "
                    "data.dropped_without_target)", len(enc) - len(kept), len(enc), max_length)
    return kept, len(enc) - len(kept)


def padding_tokenizer(tokenizer, side: str):
    """A copy of `tokenizer` that pads on `side` with its pad id, or with its EOS id when it has none. A copy:
    the user's tokenizer is saved with the exported model and must keep its own pad token and side."""
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has neither a pad nor an EOS token to pad causal-LM batches with")
    padder = copy.deepcopy(tokenizer)
    if padder.pad_token_id is None:
        padder.pad_token = padder.eos_token
    padder.padding_side = side
    return padder


class CausalLMCollator(DataCollatorForSeq2Seq):
    """DataCollatorForSeq2Seq without its `labels: None` in a batch of features that have no labels (such a
    batch goes to the model as it is, e.g. the export's probe, and every value in it is a tensor)."""

    def __call__(self, features, return_tensors=None):
        batch = super().__call__(features, return_tensors)
        if batch.get("labels") is None:
            del batch["labels"]
        return batch


def collator_for(tokenizer) -> CausalLMCollator:
    """Right-pads a batch: input_ids with the pad (else EOS) id, attention_mask with 0, labels with -100."""
    return CausalLMCollator(padding_tokenizer(tokenizer, "right"), label_pad_token_id=IGNORE_INDEX, return_tensors="pt")


def carve_validation(ds: Dataset, size, seed: int) -> tuple[Dataset, Dataset]:
    """(train, validation): `size` rows (a count >= 1, or a fraction in (0, 1)) drawn with a fixed seed."""
    if isinstance(size, bool) or not isinstance(size, (int, float)) or size <= 0 or (size >= 1 and size != int(size)):
        raise ConfigError(f"task.options.val_set_size={size!r}: must be a whole count >= 1 or a fraction in (0, 1)")
    size = int(size) if size >= 1 else float(size)
    if size >= len(ds):
        raise ConfigError(f"task.options.val_set_size={size} must be smaller than the {len(ds)} training rows")
    parts = ds.train_test_split(test_size=size, shuffle=True, seed=seed)
    return parts["train"], parts["test"]


def subset_train(ds: Dataset, n: int | None, seed: int, mode: str) -> Dataset:
    """max_train_samples rows: 'random' (shuffled with the run seed) or 'first' (as a hub slice train[:n])."""
    if mode not in ("random", "first"):
        raise ConfigError(f"task.options.train_subset={mode!r}; allowed: random, first")
    if not n or n >= len(ds):
        return ds
    return (ds.shuffle(seed=seed) if mode == "random" else ds).select(range(n))


def first_rows(ds: Dataset, n: int | None) -> Dataset:
    return ds.select(range(min(n, len(ds)))) if n else ds
