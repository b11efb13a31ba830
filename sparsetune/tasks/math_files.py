"""task=gsm8k / task=metamathqa's local files and their row checks, with the standard library only: the
loader (math.py) and the CLI's data preflight (preflight.py) share them. Splits without a local file come
from the hub (the loader's business; the preflight skips them). MetaMathQA's train file (395K rows) is
loaded lazily (lazy_files.py): the preflight checks its first rows only (file_head.py)."""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .errors import DataError
from .file_head import head_rows
from .local_files import local_paths, read_records
from .math_answers import gold_answer
from .read_cache import cached_read
from .rows import Rows, require_columns

LAYOUTS = {
    "gsm8k": {"train": "train.jsonl", "test": "test.jsonl"},
    "metamathqa": {"train": "MetaMathQA-395K.json", "test": "gsm8k_test.jsonl"},
}
TRAIN_COLUMNS = {"gsm8k": ("question", "answer"), "metamathqa": ("query", "response")}
TEST_COLUMNS = ("question", "answer")  # both evaluate on GSM8K test
LAZY = {"metamathqa": ("train",)}  # splits too large to read into Python lists


def check_splits(task) -> None:
    if task.train_split != "train" or list(task.eval_splits) != ["test"]:
        raise ConfigError(f"task {task.name!r} uses train_split=train and eval_splits=[test] (GSM8K test); "
                          f"got {task.train_split!r} and {list(task.eval_splits)}")


def checked_rows(path: str | Path, columns: tuple[str, str], gsm8k_answers: bool) -> Rows:
    """A local split's rows, every one checked (text in `columns`; GSM8K answers ending in '#### N'), so a
    bad one is named by file and line."""
    rows = read_records(path)
    check_pairs(rows, columns, str(path))
    for i, row in enumerate(rows if gsm8k_answers else ()):
        try:
            gold_answer(row["answer"])
        except ValueError as e:
            raise DataError(f"{rows.where(i)}: {e}") from None
    return rows


def check_pairs(rows, columns: tuple[str, str], source: str = "") -> None:
    """A non-empty list of rows with text in `columns`; else a DataError naming the row."""
    if not isinstance(rows, Rows) or not rows:
        raise DataError(f"{getattr(rows, 'path', source)}: expected a non-empty list of rows (a .jsonl file or a .json list) "
                        f"with the columns {list(columns)}")
    require_columns(rows, list(columns), source=source)


def lazy_split(task, split: str) -> bool:
    return split in LAZY.get(task.loader, ())


def local_split(task, split: str, path: Path) -> Rows:
    """Split `train` or `test` of task.loader from its local file, checked (kept for the loader by the preflight)."""
    columns, answers = (TRAIN_COLUMNS[task.loader], False) if split == "train" else (TEST_COLUMNS, True)
    return cached_read(path, ("math", columns, answers), lambda: checked_rows(path, columns, answers))


def check_local(task) -> None:
    """The data preflight: every split that has a local file."""
    check_splits(task)
    for split, path in (local_paths(task, LAYOUTS[task.loader]) or {}).items():
        if lazy_split(task, split):
            check_pairs(head_rows(path), TRAIN_COLUMNS[task.loader], str(path))
        elif split in ("train", "test"):
            local_split(task, split, path)
