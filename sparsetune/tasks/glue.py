"""task=glue/<name>: hub (nyu-mll/glue), the original GLUE layout in task.data_dir, or local files.

Every source goes through one label check before tokenization (labels.py): a label outside the task's set
or a non-finite score is a DataError naming the row; rows without a label are dropped and counted in
data.dropped_rows (task.missing_labels=drop, with a warning) or refused (task.missing_labels=error).
Reading local files and checking their labels is glue_local.py (standard library only: the CLI's data
preflight runs it before torch loads, and the rows it read are reused here). The checked text columns then
become a cached Arrow dataset (arrow_cache.py: datasets' own json / csv / parquet reader for task.data_files;
the original-layout TSVs stay with glue_files.py, as their quirks -- unbalanced quotes, CoLA without a
header, label words, lines with extra fields -- are not something datasets' csv reader can take), so a
second run reuses its tokenisation."""
from __future__ import annotations

import datasets
from datasets import Dataset, DatasetDict, Value
from transformers import DataCollatorWithPadding

from ..errors import ConfigError
from ..evaluation.metrics import metrics_fn
from ..hub import require_hub
from ..registry import TASK_LOADERS
from .arrow_cache import BUILDERS, cached_map, file_dataset, rows_dataset, text_features
from .base import TaskData, limit, tokenize_pairs
from .glue_local import local_splits, rows_labels, split_labels
from .labels import NO_LABEL, check_policy, warn_dropped
from .rows import Rows


def raw_splits(task, splits: list[str]) -> tuple[dict[str, Rows | Dataset], str]:
    """Raw (untokenized) splits with the hub's columns, and a description of where they came from. Local
    splits are Rows (each row knows its file and line); hub splits are Datasets."""
    local = local_splits(task, splits)
    if local is not None:
        return local
    try:
        ds: DatasetDict = datasets.load_dataset(task.hub_id, task.hub_config)  # cache hit works offline
    except Exception:
        require_hub(f"dataset {task.hub_id}/{task.hub_config}", "task.data_dir (GLUE original layout) or task.data_files")
        raise
    missing = [s for s in splits if s not in ds]
    if missing:
        raise ConfigError(f"hub dataset {task.hub_id}/{task.hub_config} has no split(s) {missing}; it has {sorted(ds)}")
    return {s: ds[s] for s in splits}, f"hub {task.hub_id}/{task.hub_config}"


def labelled_split(task, split: str, raw: Rows | Dataset, source: str) -> tuple[Dataset, int]:
    """The split's rows that have a valid label, as a Dataset, and how many rows had no label."""
    if isinstance(raw, Dataset):
        columns = raw.column_names
        values = raw[task.label_field] if task.label_field in columns else [None] * len(raw)
        _, keep = split_labels(task, split, len(raw), columns, values, lambda i: f"{source} split {split!r} row {i + 1}",
                               source)
        return (raw if len(keep) == len(raw) else raw.select(keep)), len(raw) - len(keep)
    labels, keep = rows_labels(task, split, raw, source)
    text = text_features(list(task.text_fields))
    ds = file_dataset(raw, text) if raw.path.suffix in BUILDERS else rows_dataset(raw, text)
    label = str(task.label_field)
    features = text_features(list(task.text_fields), **{label: Value("float64" if task.kind == "regression" else "int64")})
    ds = cached_map(ds, lambda _, indices: {label: [labels[i] for i in indices]}, with_indices=True, batched=True,
                    features=features, desc="labels")
    return (ds if len(keep) == len(raw) else ds.select(keep)), len(raw) - len(keep)


@TASK_LOADERS.register("glue")
def load_glue(task, tokenizer, seed: int) -> TaskData:
    check_policy(task.missing_labels)
    splits = list(dict.fromkeys([task.train_split, *task.eval_splits]))
    raw, source = raw_splits(task, splits)
    clean, dropped = {}, {}
    for s in splits:
        clean[s], dropped[s] = labelled_split(task, s, raw[s], source)
        warn_dropped(task.name, s, dropped[s], len(raw[s]))
    regression = task.kind == "regression"
    train = limit(clean[task.train_split].shuffle(seed=seed) if task.max_train_samples else clean[task.train_split],
                  task.max_train_samples)
    evals = {s: limit(clean[s], task.max_eval_samples) for s in task.eval_splits}
    enc = lambda ds: tokenize_pairs(ds, tokenizer, list(task.text_fields), task.max_length, task.label_field, regression)
    return TaskData(
        train=enc(train),
        eval={s: enc(d) for s, d in evals.items()},
        collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics_fn(list(task.metrics)),
        info={"source": source, "train_split": task.train_split, "eval_splits": list(task.eval_splits),
              "num_train": len(train), "num_eval": {s: len(d) for s, d in evals.items()}, "max_length": task.max_length,
              "dropped_rows": {s: {NO_LABEL: n} for s, n in dropped.items()}, "missing_labels": task.missing_labels},
    )
