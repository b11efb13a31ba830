"""What the data preflight read is kept for the task loader, so a run parses each data file once with the
standard library readers (datasets parses a file too, on its first run only: arrow_cache.py caches it).

The CLI's preflight reads and checks the local data files before torch loads (tasks/preflight.py) inside
`keeping()`; the loader's read of the same file (same resolved path, mtime and size, same reader settings)
then takes the kept result (a file's rows, or the checked rows / pairs made of them) instead of parsing the
file again. A taken entry is dropped, so the rows are not held for the rest of the run; reads outside a
preflight (tests, a programmatic run()) are not kept.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_kept: dict[tuple, object] = {}
_keeping = False


def _key(path: Path, settings: tuple) -> tuple | None:
    try:
        st = path.stat()
        return str(path.resolve()), st.st_mtime_ns, st.st_size, settings
    except OSError:
        return None  # no such file: the reader itself says what was expected


def cached_read(path: str | Path, settings: tuple, read: Callable[[], T]) -> T:
    """read(): kept while a preflight runs, taken from what a preflight kept otherwise. `settings` are
    whatever else the result depends on (e.g. the label set a TSV's labels were parsed against). A read may
    wrap another (pairs made from a file's rows): only the outer result is kept."""
    key = _key(Path(path), settings)
    if key is None:
        return read()
    if key in _kept:
        return _kept[key] if _keeping else _kept.pop(key)
    for stale in [k for k in _kept if k[0] == key[0] and k[1:3] != key[1:3]]:  # the file changed since it was kept
        del _kept[stale]
    if not _keeping:
        return read()
    _kept[key] = _read_unkept(read)
    return _kept[key]


def _read_unkept(read: Callable[[], T]) -> T:
    global _keeping
    _keeping = False
    try:
        return read()
    finally:
        _keeping = True


@contextmanager
def keeping():
    """Reads inside are kept for the loader. Starts empty (a sweep's previous job may have left rows its
    loader never took); a failed preflight keeps nothing."""
    global _keeping
    _kept.clear()
    _keeping = True
    try:
        yield
    except BaseException:
        _kept.clear()
        raise
    finally:
        _keeping = False


def kept_count() -> int:
    return len(_kept)
