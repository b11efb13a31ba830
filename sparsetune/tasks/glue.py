"""task=glue/<name>: hub (nyu-mll/glue), the original GLUE layout in task.data_dir, or local files."""
from __future__ import annotations

from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict
from transformers import DataCollatorWithPadding

from ..evaluation.metrics import metrics_fn
from ..hub import require_hub
from ..registry import TASK_LOADERS
from .base import TaskData, limit, tokenize_pairs
from .glue_files import LAYOUT, read_split

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def _glue_name(task) -> str:
    name = task.options.get("glue_task", task.hub_config)
    if name not in LAYOUT:
        raise ValueError(f"unknown GLUE task {name!r}; valid: {sorted(LAYOUT)}")
    return name


def raw_splits(task, splits: list[str]) -> tuple[dict[str, Dataset], str]:
    """Raw (untokenized) splits with the hub's columns, and a description of where they came from."""
    glue = _glue_name(task)
    regression = task.kind == "regression"
    if task.data_files:
        missing = [s for s in splits if s not in task.data_files]
        if missing:
            raise ValueError(f"task.data_files lacks split(s) {missing}; it has {sorted(task.data_files)}")
        out = {}
        for s in splits:
            path = Path(task.data_files[s]).expanduser()
            builder = FILE_BUILDERS.get(path.suffix)
            if builder is None:
                raise ValueError(f"task.data_files[{s}]: {path.suffix!r} files are not supported; use {sorted(FILE_BUILDERS)}")
            if not path.is_file():
                raise FileNotFoundError(f"task.data_files[{s}]: {path} does not exist")
            out[s] = datasets.load_dataset(builder, data_files=str(path), split="train")
        return out, f"files {dict(task.data_files)}"
    if task.data_dir:
        return {s: Dataset.from_list(read_split(task.data_dir, glue, s, regression)) for s in splits}, f"GLUE layout at {task.data_dir}"
    try:
        ds: DatasetDict = datasets.load_dataset(task.hub_id, task.hub_config)  # cache hit works offline
    except Exception:
        require_hub(f"dataset {task.hub_id}/{task.hub_config}", "task.data_dir (GLUE original layout) or task.data_files")
        raise
    return {s: ds[s] for s in splits}, f"hub {task.hub_id}/{task.hub_config}"


@TASK_LOADERS.register("glue")
def load_glue(task, tokenizer, seed: int) -> TaskData:
    splits = [task.train_split, *task.eval_splits]
    raw, source = raw_splits(task, splits)
    regression = task.kind == "regression"
    train = limit(raw[task.train_split].shuffle(seed=seed) if task.max_train_samples else raw[task.train_split], task.max_train_samples)
    evals = {s: limit(raw[s], task.max_eval_samples) for s in task.eval_splits}
    enc = lambda ds: tokenize_pairs(ds, tokenizer, list(task.text_fields), task.max_length, task.label_field, regression)
    return TaskData(
        train=enc(train),
        eval={s: enc(d) for s, d in evals.items()},
        collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics_fn(list(task.metrics)),
        info={"source": source, "train_split": task.train_split, "eval_splits": list(task.eval_splits),
              "num_train": len(train), "num_eval": {s: len(d) for s, d in evals.items()}, "max_length": task.max_length},
    )
