"""Reading GLUE in its original distribution layout (<dir>/SST-2/train.tsv, ...), quirks included:
CoLA has no header, MRPC's header starts with a BOM, labels of RTE/QNLI/MNLI are words, MNLI has
matched/mismatched dev files, and fields may contain unbalanced quotes (so no CSV quoting).
A line with too few fields or a label outside the task's set is a DataError naming the file and line; an
empty label is kept as None (the loader drops and counts such rows, or refuses them)."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

from ..errors import ConfigError
from .errors import DataError
from .labels import parse_label
from .read_cache import cached_read
from .rows import Rows

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
        raise ConfigError(f"GLUE split {split!r} has no file in the original layout; valid: {sorted(SPLIT_FILES)}")
    return task_dir(root, glue_task) / SPLIT_FILES[split]


def read_split(root: str | Path, glue_task: str, split: str, regression: bool, num_labels: int | None = None) -> Rows:
    """Rows with the hub's column names and the label as a class id / score (None where the line has none)."""
    path = split_path(root, glue_task, split)
    if not path.is_file():
        raise FileNotFoundError(f"task.data_dir: expected {path} (GLUE original layout: <dir>/{LAYOUT[glue_task][0]}/{path.name})")
    return cached_read(path, ("glue", glue_task, regression, num_labels),
                       lambda: _read_tsv(path, glue_task, regression, num_labels))


def _read_tsv(path: Path, glue_task: str, regression: bool, num_labels: int | None) -> Rows:
    _, fields, label_col, label_map = LAYOUT[glue_task]
    csv.field_size_limit(sys.maxsize)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # utf-8-sig drops MRPC's BOM
            lines = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    has_header = not isinstance(label_col, int)
    if has_header and not lines:
        raise DataError(f"{path}: empty file; expected a header line naming the columns "
                        f"{[label_col, *fields.values()]}")
    header = lines[0] if has_header else None
    col = (lambda name: name) if header is None else (lambda name: header.index(name))
    try:
        cols = {k: col(v) for k, v in fields.items()}
        lab = col(label_col)
    except ValueError as e:
        raise DataError(f"{path}:1: unexpected header {header}: {e}") from None
    width = max([*cols.values(), lab]) + 1
    expected = f" ({', '.join(header)})" if header else ""
    out, where = [], []
    for n, r in enumerate(lines[1:] if has_header else lines, 2 if has_header else 1):
        if not r:
            continue  # a blank line holds no row
        if len(r) < width:
            raise DataError(f"{path}:{n}: {len(r)} tab-separated field(s); expected at least {width}{expected}")
        try:
            label = parse_label(r[lab], regression=regression, num_labels=num_labels, words=label_map)
        except ValueError as e:
            raise DataError(f"{path}:{n}: {e}") from None
        out.append({**{k: r[i] for k, i in cols.items()}, "label": label})
        where.append(n)
    return Rows(out, path, where)
