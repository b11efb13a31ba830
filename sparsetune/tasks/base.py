"""What a task loader returns, and the shared tokenization for sentence(-pair) classification."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset

from .arrow_cache import cached_map


@dataclass
class TaskData:
    train: Dataset
    eval: dict[str, Dataset]  # split name -> tokenized dataset; the first is the main one
    collator: Callable
    compute_metrics: Callable | None
    info: dict = field(default_factory=dict)  # recorded in results.json: source, splits, sizes, max length
    extras: dict[str, Any] = field(default_factory=dict)


def limit(ds: Dataset, n: int | None) -> Dataset:
    return ds.select(range(min(n, len(ds)))) if n else ds


def tokenize_pairs(ds: Dataset, tokenizer, text_fields: list[str], max_length: int, label_field: str, regression: bool) -> Dataset:
    def encode(batch):
        texts = [batch[f] for f in text_fields]
        enc = tokenizer(*texts, truncation=True, max_length=max_length)
        enc["labels"] = [float(x) for x in batch[label_field]] if regression else batch[label_field]
        return enc

    return cached_map(ds, encode, batched=True, remove_columns=ds.column_names, desc="tokenize")
