"""task=synthetic/sentiment: generated in-process, used by the demo and the tests."""
from __future__ import annotations

from datasets import Value
from transformers import DataCollatorWithPadding

from ..evaluation.metrics import metrics_fn
from ..registry import TASK_LOADERS
from .arrow_cache import rows_dataset, text_features
from .base import TaskData, limit, tokenize_pairs
from .labels import labelled
from .synthetic_text import make_split


@TASK_LOADERS.register("synthetic_sentiment")
def load_synthetic_sentiment(task, tokenizer, seed: int) -> TaskData:
    opts = task.options
    n_train, n_eval, data_seed = int(opts.get("n_train", 2000)), int(opts.get("n_eval", 500)), int(opts.get("seed", 0))
    features = text_features(["sentence"], label=Value("int64"))
    raw_train = limit(rows_dataset(make_split(n_train, data_seed), features), task.max_train_samples)
    raw_eval = limit(rows_dataset(make_split(n_eval, data_seed + 1), features), task.max_eval_samples)
    for split, ds in (("train", raw_train), ("validation", raw_eval)):  # task.num_labels may be set below 2
        labelled(ds[task.label_field], lambda i, s=split: f"generated {s} row {i + 1}", split=split, regression=False,
                 num_labels=int(task.num_labels), words=None, policy="error")
    enc = lambda ds: tokenize_pairs(ds, tokenizer, list(task.text_fields), task.max_length, task.label_field, False)
    return TaskData(
        train=enc(raw_train),
        eval={"validation": enc(raw_eval)},
        collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics_fn(list(task.metrics)),
        info={"source": f"generated (seed {data_seed})", "train_split": "train", "eval_splits": ["validation"],
              "num_train": len(raw_train), "num_eval": {"validation": len(raw_eval)}, "max_length": task.max_length},
    )
