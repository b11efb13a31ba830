"""Where a causal-LM task's raw rows come from: task.data_files, task.data_dir, or the hub (offline-first).

Files are read with the standard library (json / jsonl / csv) so quirks stay visible: csv is read with
newline="" (quoted fields, CRLF line ends) and utf-8-sig (a BOM in the header is dropped). A file that does
not parse is a DataError naming the file and line; rows remember their line (rows.Rows) for later checks.
Reading local files needs neither torch nor `datasets` (pyarrow for .parquet), so the CLI's data preflight
can use these readers before the model loads; what it read is kept for the loader (read_cache.py). The
loaders then take the file through datasets.load_dataset (arrow_cache.file_dataset: cached as Arrow, so a
second run reuses its tokenisation) and check that the columns they use hold what these readers read.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..hub import require_hub
from .errors import DataError
from .read_cache import cached_read
from .rows import Document, Rows

if TYPE_CHECKING:
    from datasets import Dataset

READABLE = (".json", ".jsonl", ".csv", ".parquet")


def read_records(path: str | Path) -> Rows | Document:
    """Rows of a .jsonl / .csv / .parquet file; a .json file's top level as is (a list of rows, or a dict
    such as WebNLG's {"entries": [...]}). A .json file holding JSON lines (as datasets' to_json writes
    them) is read as .jsonl."""
    path = Path(path).expanduser()
    if path.suffix not in READABLE:
        raise ConfigError(f"{path}: {path.suffix!r} files are not supported; use one of {list(READABLE)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return cached_read(path, ("records",), lambda: _read_records(path))


def _read_records(path: Path) -> Rows | Document:
    try:
        if path.suffix == ".parquet":
            return read_parquet(path)
        if path.suffix == ".csv":
            return read_csv(path)
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return read_json_lines(text, path) if path.suffix == ".jsonl" else read_json(text, path)


def read_json(text: str, path: Path) -> Rows | Document:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and text.lstrip().startswith("{"):
            return read_json_lines(text, path)
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    if isinstance(data, dict):
        return Document(data, path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of rows (or an object); got {type(data).__name__}")
    rows = Rows(data, path)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{rows.where(i)}: expected a JSON object ({{\"column\": value, ...}}) per row; got {row!r:.60}")
    return rows


def read_json_lines(text: str, path: Path) -> Rows:
    rows, lines = [], []
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): JSON text may hold a raw U+2028
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno}); "
                            "a .jsonl file holds one JSON object per line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{n}: expected a JSON object ({{\"column\": value, ...}}) per line; got {row!r:.60}")
        rows.append(row)
        lines.append(n)
    return Rows(rows, path, lines)


def read_csv(path: Path) -> Rows:
    """Rows keyed by the header; a row with more or fewer fields than the header is an error (csv.DictReader
    would silently pad it with None or file the extras under None)."""
    rows, lines = [], []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next((r for r in reader if r), None)
            if header is None:
                raise DataError(f"{path}: empty file; expected a header line with the column names")
            start = reader.line_num + 1
            for fields in reader:
                if fields:  # blank lines hold no row
                    if len(fields) != len(header):
                        raise DataError(f"{path}:{start}: {len(fields)} field(s) where the header has {len(header)} "
                                        f"({', '.join(header)}); quote fields that contain commas")
                    rows.append(dict(zip(header, fields)))
                    lines.append(start)
                start = reader.line_num + 1
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
    return Rows(rows, path, lines)


def read_parquet(path: Path) -> Rows:
    import pyarrow.parquet as pq  # only parquet needs it (~0.2 s to import)

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises many types for a damaged file; all mean the same to the user
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}: {first_line})") from None
    return Rows(rows, path, [None] * len(rows))


def local_paths(task, layout: dict[str, str]) -> dict[str, Path] | None:
    """{split: file} from task.data_files, else task.data_dir + the task's file names, else None (= hub).
    Splits whose file is absent from data_dir are left out; the caller says which ones it needs."""
    if task.data_files:
        return {split: Path(p).expanduser() for split, p in task.data_files.items()}
    if task.data_dir:
        root = Path(task.data_dir).expanduser()
        return {split: root / name for split, name in layout.items() if (root / name).is_file()}
    return None


def require_splits(paths: dict[str, Path], splits: list[str], task, layout: dict[str, str]) -> None:
    missing = [s for s in splits if s not in paths]
    if missing:
        where = f"task.data_files (it has {sorted(paths)})" if task.data_files else \
            f"task.data_dir={task.data_dir} (expected file names: {dict((s, layout.get(s)) for s in missing)})"
        raise ConfigError(f"task {task.name!r} needs split(s) {missing}; not found in {where}")


def hub_splits(hub_id: str, hub_config: str | None, splits: list[str], local_option: str,
               revision: str | None = None) -> dict[str, Dataset]:
    """The named splits from the hub (a cached copy works offline); fails fast naming the local option.
    `revision` picks e.g. the hub's parquet conversion (refs/convert/parquet) of a script-only dataset,
    which datasets >= 4 can no longer run."""
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, hub_config, revision=revision)
    except Exception:
        require_hub(f"dataset {hub_id}" + (f"/{hub_config}" if hub_config else ""), local_option)
        raise
    missing = [s for s in splits if s not in ds]
    if missing:
        raise ConfigError(f"hub dataset {hub_id} has no split(s) {missing}; it has {sorted(ds)}")
    return {s: ds[s] for s in splits}
