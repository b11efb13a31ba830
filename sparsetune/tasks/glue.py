"""task=glue/<name>: hub (nyu-mll/glue), the original GLUE layout in task.data_dir, or local files.

Every source goes through one label check before tokenization (labels.py): a label outside the task's set
or a non-finite score is a DataError naming the row; rows without a label are dropped and counted in
data.dropped_rows (task.missing_labels=drop, with a warning) or refused (task.missing_labels=error)."""
from __future__ import annotations

from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict
from transformers import DataCollatorWithPadding

from ..errors import ConfigError
from ..evaluation.metrics import metrics_fn
from ..hub import require_hub
from ..registry import TASK_LOADERS
from .base import TaskData, limit, tokenize_pairs
from .errors import DataError
from .glue_files import LAYOUT, read_split
from .labels import NO_LABEL, check_policy, labelled, warn_dropped
from .local_files import READABLE, read_records
from .rows import Rows, require_columns


def _glue_name(task) -> str:
    name = task.options.get("glue_task", task.hub_config)
    if name not in LAYOUT:
        raise ConfigError(f"unknown GLUE task {name!r}; valid: {sorted(LAYOUT)}")
    return name


def _file_rows(task, split: str) -> Rows:
    path = Path(task.data_files[split]).expanduser()
    if path.suffix not in READABLE:
        raise ConfigError(f"task.data_files[{split}]: {path.suffix!r} files are not supported; use {list(READABLE)}")
    if not path.is_file():
        raise FileNotFoundError(f"task.data_files[{split}]: {path} does not exist")
    rows = read_records(path)
    if not isinstance(rows, Rows):
        raise DataError(f"{path}: expected a list of rows with the columns {[*task.text_fields, task.label_field]}; "
                        "got a JSON object")
    require_columns(rows, list(task.text_fields))
    return rows


def raw_splits(task, splits: list[str]) -> tuple[dict[str, Rows | Dataset], str]:
    """Raw (untokenized) splits with the hub's columns, and a description of where they came from. Local
    splits are Rows (each row knows its file and line); hub splits are Datasets."""
    glue = _glue_name(task)
    regression = task.kind == "regression"
    if task.data_files:
        missing = [s for s in splits if s not in task.data_files]
        if missing:
            raise ConfigError(f"task.data_files lacks split(s) {missing}; it has {sorted(task.data_files)}")
        return {s: _file_rows(task, s) for s in splits}, f"files {dict(task.data_files)}"
    if task.data_dir:
        return {s: read_split(task.data_dir, glue, s, regression, int(task.num_labels)) for s in splits}, \
            f"GLUE layout at {task.data_dir}"
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
    if not len(raw):
        raise DataError(f"split {split!r} ({source}) has no rows")
    columns = raw.column_names if isinstance(raw, Dataset) else set().union(*raw)
    missing = [c for c in task.text_fields if c not in columns]
    if missing:
        raise ConfigError(f"task.text_fields {missing} are not columns of split {split!r} ({source}); it has {sorted(columns)}")
    if isinstance(raw, Dataset):
        values = raw[task.label_field] if task.label_field in columns else [None] * len(raw)
        where = lambda i: f"{source} split {split!r} row {i + 1}"  # noqa: E731
    else:
        values, where = [row.get(task.label_field) for row in raw], raw.where
    labels, keep = labelled(values, where, split=split, regression=task.kind == "regression", num_labels=int(task.num_labels),
                            words=LAYOUT[_glue_name(task)][3], policy=task.missing_labels)
    if not keep:
        raise DataError(f"split {split!r} ({source}): none of its {len(raw)} rows has a label in column {task.label_field!r}")
    if isinstance(raw, Dataset):
        return (raw if len(keep) == len(raw) else raw.select(keep)), len(raw) - len(keep)
    rows = [{**raw[i], task.label_field: labels[i]} for i in keep]
    return Dataset.from_list(rows), len(raw) - len(keep)


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
