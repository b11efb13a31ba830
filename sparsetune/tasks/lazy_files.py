"""Large local data files (MetaMathQA, OASST2, CodeFeedback) loaded lazily: datasets' own loader parses the
file once into its Arrow cache (memory-mapped; later runs reuse it) and the columns a task uses are checked
on the Arrow data (types, nulls), so the rows never become Python lists.

Only a file that fails those checks (or that datasets cannot parse) is read by the project's reader
(local_files.read_records) and checked row by row, so the error names the file and line as for the small
sets; where that finds every row usable (e.g. text datasets reads as timestamps), the reader's rows are
used instead (arrow_cache.file_dataset). Hub splits are Arrow-backed already (local_files.hub_splits).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from datasets import Dataset, Features

from .arrow_cache import BUILDERS, file_dataset
from .local_files import read_records

TEXT = ("string", "large_string")
INTEGER = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def lazy_dataset(path: str | Path, features: Features, required: tuple[str, ...], check_rows: Callable[..., None],
                 values_ok: Callable[[Dataset], bool] | None = None) -> Dataset:
    """The `features` columns of the file (those it has; `required` ones must be there, without nulls), Arrow-
    backed. `check_rows` is the task's row check (DataError naming the row), used only when the Arrow checks
    (`schema_ok`, then the task's own `values_ok`) fail; it must reject what they reject."""
    path = Path(path).expanduser()
    try:
        ds = load_file(path)
    except Exception:  # pyarrow, pandas and datasets raise many types; the reader below names the problem
        ds = None
    if ds is not None:
        ds = ds.select_columns([c for c in features if c in ds.column_names])
        if schema_ok(ds, features, required) and (values_ok is None or values_ok(ds)):
            return ds
    rows = read_records(path)  # a DataError (file:line) where the file does not parse
    check_rows(rows, source=str(path))
    return file_dataset(rows, features)


def load_file(path: Path) -> Dataset:
    """The whole file through datasets' json / csv / parquet builder (cached as Arrow by path and mtime)."""
    from datasets import load_dataset

    if path.suffix not in BUILDERS:
        raise ValueError(f"{path}: no datasets builder for {path.suffix!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    options = {"keep_default_na": False, "na_filter": False} if path.suffix == ".csv" else {}
    return load_dataset(BUILDERS[path.suffix], data_files={"train": str(path)}, split="train", **options)


def schema_ok(ds: Dataset, features: Features, required: tuple[str, ...]) -> bool:
    """Whether the column types alone say every row is usable: `required` columns present with no nulls,
    every column of the kind `features` declares (an optional column may be absent or all null)."""
    for column, feature in features.items():
        if column not in ds.column_names:
            if column in required:
                return False
            continue
        kind = getattr(ds.features[column], "dtype", None)
        if column in required and (kind == "null" or ds.data.column(column).null_count):
            return False
        if kind != "null" and not same_kind(kind, feature):
            return False
    return True


def same_kind(kind: str | None, feature) -> bool:
    want = getattr(feature, "dtype", None)
    if want in TEXT:
        return kind in TEXT
    if want in INTEGER:
        return kind in INTEGER
    return kind == want

