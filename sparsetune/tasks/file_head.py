"""The first rows of a large local data file, with the standard library only (pyarrow for .parquet).

Large sets (MetaMathQA, OASST2, CodeFeedback) are loaded lazily by datasets (lazy_files.py), so the CLI's
data preflight does not read them whole: it checks their first rows, which catches the usual mistakes (the
wrong file, other column names) before torch loads; a bad row further down is named by the loader.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError
from .errors import DataError
from .local_files import READABLE, local_paths
from .rows import Rows

HEAD_ROWS = 100
CHUNK = 1 << 16


def head_rows(path: str | Path, n: int = HEAD_ROWS) -> Rows:
    """Up to n rows from the start of a .jsonl / .json (a list, or JSON lines) / .csv / .parquet file."""
    path = Path(path).expanduser()
    if path.suffix not in READABLE:
        raise ConfigError(f"{path}: {path.suffix!r} files are not supported; use one of {list(READABLE)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if path.suffix == ".parquet":
        return _parquet_head(path, n)
    if path.suffix == ".csv":
        return _csv_head(path, n)
    with path.open(encoding="utf-8-sig") as f:
        first = f.read(CHUNK)
    if path.suffix == ".json" and first.lstrip().startswith("["):
        return _json_list_head(path, n)
    return _json_lines_head(path, n)


def _json_lines_head(path: Path, n: int) -> Rows:
    rows, lines = [], []
    with path.open(encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if len(rows) == n:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno}); "
                                "a .jsonl file holds one JSON object per line") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: expected a JSON object ({{\"column\": value, ...}}) per line; got {row!r:.60}")
            rows.append(row)
            lines.append(number)
    return Rows(rows, path, lines)


def _json_list_head(path: Path, n: int) -> Rows:
    """The first n elements of a top-level JSON list, decoding a growing prefix of the file (a damaged file
    is read to its end, so the error is the one a whole read would give)."""
    decoder, text, done = json.JSONDecoder(), "", False
    with path.open(encoding="utf-8-sig") as f:
        while True:
            chunk = f.read(CHUNK * (1 + len(text) // CHUNK))
            text, done = text + chunk, not chunk
            try:
                return _decode_elements(decoder, text, path, n, complete=done)
            except json.JSONDecodeError as e:
                if done:
                    raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None


def _decode_elements(decoder: json.JSONDecoder, text: str, path: Path, n: int, complete: bool) -> Rows:
    """Raises JSONDecodeError where `text` ends before n elements (or the list's end) could be decoded."""
    rows, pos = [], text.index("[") + 1
    while len(rows) < n:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos < len(text) and text[pos] == "]":
            break
        if pos >= len(text):
            raise json.JSONDecodeError("unterminated list" if complete else "more text needed", text, pos)
        start = pos
        row, pos = decoder.raw_decode(text, pos)
        if not isinstance(row, dict):
            raise DataError(f"{path}:{text.count(chr(10), 0, start) + 1}: expected a JSON object "
                            f"({{\"column\": value, ...}}) per row; got {row!r:.60}")
        rows.append(row)
    return Rows(rows, path)  # a row's line is looked up (json_list_line) only when one has to be named


def _csv_head(path: Path, n: int) -> Rows:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next((r for r in reader if r), None)
            if header is None:
                raise DataError(f"{path}: empty file; expected a header line with the column names")
            rows, lines, start = [], [], reader.line_num + 1
            for fields in reader:
                if len(rows) == n:
                    break
                if fields:  # blank lines hold no row
                    rows.append(dict(zip(header, fields)))
                    lines.append(start)
                start = reader.line_num + 1
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
    return Rows(rows, path, lines)


def _parquet_head(path: Path, n: int) -> Rows:
    import pyarrow.parquet as pq

    try:
        batch = next(pq.ParquetFile(path).iter_batches(batch_size=n), None)
    except Exception as e:  # pyarrow raises many types for a damaged file
        raise DataError(f"{path}: not a readable parquet file ({type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]})") from None
    rows = batch.to_pylist() if batch is not None else []
    return Rows(rows, path, [None] * len(rows))


def check_heads(task, layout: dict[str, str], check: Callable[[Rows, str], None]) -> None:
    """The preflight of a lazily loaded task: the first rows of each local split it uses, by `check`."""
    for split, path in (local_paths(task, layout) or {}).items():
        if split in (task.train_split, *task.eval_splits):
            rows = head_rows(path)
            if not rows:
                raise DataError(f"{path}: no rows; expected a non-empty data file")
            check(rows, str(path))
