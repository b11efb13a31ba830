"""task=glue's local sources (task.data_files, or the original layout in task.data_dir) and the label check
of every split, with the standard library only: the loader (glue.py) and the CLI's data preflight
(preflight.py) run the same code, so a corrupt file fails with the same file:line message before torch loads."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from .errors import DataError
from .glue_files import LAYOUT, read_split
from .labels import labelled
from .local_files import READABLE, read_records
from .rows import Rows, require_columns


def glue_name(task) -> str:
    name = task.options.get("glue_task", task.hub_config)
    if name not in LAYOUT:
        raise ConfigError(f"unknown GLUE task {name!r}; valid: {sorted(LAYOUT)}")
    return name


def file_rows(task, split: str) -> Rows:
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


def local_splits(task, splits: list[str]) -> tuple[dict[str, Rows], str] | None:
    """The splits' rows from task.data_files or task.data_dir, and where they came from; None: the hub."""
    glue = glue_name(task)
    if task.data_files:
        missing = [s for s in splits if s not in task.data_files]
        if missing:
            raise ConfigError(f"task.data_files lacks split(s) {missing}; it has {sorted(task.data_files)}")
        return {s: file_rows(task, s) for s in splits}, f"files {dict(task.data_files)}"
    if task.data_dir:
        regression = task.kind == "regression"
        return {s: read_split(task.data_dir, glue, s, regression, int(task.num_labels)) for s in splits}, \
            f"GLUE layout at {task.data_dir}"
    return None


def split_labels(task, split: str, size: int, columns, values: list, where: Callable[[int], str],
                 source: str) -> tuple[list, list[int]]:
    """(parsed labels, indices of the rows that have one) of a split of `size` rows with `columns`; a split
    without rows, text columns or any label, and a label outside the task's set, are errors naming the row."""
    if not size:
        raise DataError(f"split {split!r} ({source}) has no rows")
    missing = [c for c in task.text_fields if c not in columns]
    if missing:
        raise ConfigError(f"task.text_fields {missing} are not columns of split {split!r} ({source}); it has {sorted(columns)}")
    labels, keep = labelled(values, where, split=split, regression=task.kind == "regression", num_labels=int(task.num_labels),
                            words=LAYOUT[glue_name(task)][3], policy=task.missing_labels)
    if not keep:
        raise DataError(f"split {split!r} ({source}): none of its {size} rows has a label in column {task.label_field!r}")
    return labels, keep


def rows_labels(task, split: str, rows: Rows, source: str) -> tuple[list, list[int]]:
    """split_labels of rows read from a file (each row named by its file and line)."""
    columns, label = set().union(*rows) if rows else set(), str(task.label_field)  # one config lookup, not one per row
    return split_labels(task, split, len(rows), columns, [row.get(label) for row in rows], rows.where, source)


def check_local(task) -> None:
    """The data preflight: the train and eval splits' rows and labels, read and checked as the loader does."""
    splits = list(dict.fromkeys([task.train_split, *task.eval_splits]))
    local = local_splits(task, splits)
    if local is not None:
        raw, source = local
        for split in splits:
            rows_labels(task, split, raw[split], source)
