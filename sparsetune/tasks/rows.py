"""Rows read from a data file remember the line each one starts on, so a row a task cannot use is reported
as `path:line: what was expected` (a DataError) rather than as a KeyError or a pyarrow traceback later on."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from .errors import DataError

SEPARATORS = re.compile(r"[\s,]*")


class Rows(list):
    """A list of row dicts read from `path`; `lines[i]` is where row i starts (None: a JSON list, whose
    lines are looked up only when a row has to be named)."""

    def __init__(self, rows, path: Path, lines: list[int] | None = None):
        super().__init__(rows)
        self.path, self.lines = path, lines

    def where(self, i: int) -> str:
        line = self.lines[i] if self.lines is not None else json_list_line(self.path, i)
        return f"{self.path}:{line}" if line else f"{self.path} (row {i + 1})"


class Document(dict):
    """A JSON object read from `path` (e.g. WebNLG's {"entries": [...]}), so errors can name the file."""

    def __init__(self, data: dict, path: Path):
        super().__init__(data)
        self.path = path


def json_list_line(path: Path, index: int) -> int | None:
    """The line on which element `index` of the file's top-level JSON list starts."""
    try:
        text, decoder = path.read_text(encoding="utf-8-sig"), json.JSONDecoder()
        pos = text.index("[") + 1
        for _ in range(index):
            pos = decoder.raw_decode(text, SEPARATORS.match(text, pos).end())[1]
        return text.count("\n", 0, SEPARATORS.match(text, pos).end()) + 1
    except (OSError, ValueError):
        return None


def where(rows, i: int, source: str = "") -> str:
    """path:line of row i when the rows came from a file; '<source> row i+1' otherwise (e.g. hub rows)."""
    if isinstance(rows, Rows):
        return rows.where(i)
    return f"{source} row {i + 1}".strip()


def require_columns(rows, columns: list[str], optional: tuple[str, ...] = (), source: str = "") -> None:
    """Every row has text in each of `columns`; `optional` columns hold text or nothing."""
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{where(rows, i, source)}: expected a row with the columns {columns}; got {type(row).__name__}")
        for key in columns:
            if key not in row:
                raise DataError(f"{where(rows, i, source)}: no column {key!r} (the row has {sorted(row)}); "
                                f"expected the columns {columns}")
        for key in [*columns, *optional]:
            value = row.get(key)
            if not isinstance(value, str) and (key in columns or value is not None):
                raise DataError(f"{where(rows, i, source)}: column {key!r} holds {value!r}; expected text")


def convert_rows(rows, convert: Callable, expected: str, source: str = "") -> list:
    """[convert(row) for row in rows]; a row it cannot take is a DataError naming the row and `expected`."""
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(convert(row))
        except DataError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise DataError(f"{where(rows, i, source)}: expected {expected} ({type(e).__name__}: {e})") from None
    return out
