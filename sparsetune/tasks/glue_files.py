"""Reading GLUE in its original distribution layout (<dir>/SST-2/train.tsv, ...), quirks included:
CoLA has no header, MRPC's header starts with a BOM, labels of RTE/QNLI/MNLI are words, MNLI has
matched/mismatched dev files, and fields may contain unbalanced quotes (so no CSV quoting)."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

# task -> (directory, {hub column: tsv column or index}, label column, {label word: id} or None)
LAYOUT = {
    "cola": ("CoLA", {"sentence": 3}, 1, None),
    "sst2": ("SST-2", {"sentence": "sentence"}, "label", None),
    "mrpc": ("MRPC", {"sentence1": "#1 String", "sentence2": "#2 String"}, "Quality", None),
    "stsb": ("STS-B", {"sentence1": "sentence1", "sentence2": "sentence2"}, "score", None),
    "qqp": ("QQP", {"question1": "question1", "question2": "question2"}, "is_duplicate", None),
    "mnli": ("MNLI", {"premise": "sentence1", "hypothesis": "sentence2"}, "gold_label",
             {"entailment": 0, "neutral": 1, "contradiction": 2}),
    "qnli": ("QNLI", {"question": "question", "sentence": "sentence"}, "label", {"entailment": 0, "not_entailment": 1}),
    "rte": ("RTE", {"sentence1": "sentence1", "sentence2": "sentence2"}, "label", {"entailment": 0, "not_entailment": 1}),
}
# hub split name -> file name
SPLIT_FILES = {"train": "train.tsv", "validation": "dev.tsv", "validation_matched": "dev_matched.tsv",
               "validation_mismatched": "dev_mismatched.tsv"}


def task_dir(root: str | Path, glue_task: str) -> Path:
    """Accept the GLUE root (containing SST-2/) or the task's own directory."""
    root = Path(root).expanduser()
    sub = root / LAYOUT[glue_task][0]
    return sub if sub.is_dir() else root


def split_path(root: str | Path, glue_task: str, split: str) -> Path:
    if split not in SPLIT_FILES:
        raise ValueError(f"GLUE split {split!r} has no file in the original layout; valid: {sorted(SPLIT_FILES)}")
    return task_dir(root, glue_task) / SPLIT_FILES[split]


def read_split(root: str | Path, glue_task: str, split: str, regression: bool) -> list[dict]:
    path = split_path(root, glue_task, split)
    if not path.is_file():
        raise FileNotFoundError(f"task.data_dir: expected {path} (GLUE original layout: <dir>/{LAYOUT[glue_task][0]}/{path.name})")
    _, fields, label_col, label_map = LAYOUT[glue_task]
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8-sig", newline="") as f:  # utf-8-sig drops MRPC's BOM
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header = None if isinstance(label_col, int) else rows.pop(0)
    col = (lambda name: name) if header is None else (lambda name: header.index(name))
    try:
        cols = {k: col(v) for k, v in fields.items()}
        lab = col(label_col)
    except ValueError as e:
        raise ValueError(f"{path}: unexpected header {header}: {e}") from None
    out = []
    for r in rows:
        if len(r) <= max(list(cols.values()) + [lab]):
            continue  # truncated lines exist in some GLUE dumps
        raw = r[lab].strip()
        if label_map is not None:
            if raw not in label_map:
                continue
            label = label_map[raw]
        else:
            label = float(raw) if regression else int(raw)
        out.append({**{k: r[i] for k, i in cols.items()}, "label": label})
    return out
