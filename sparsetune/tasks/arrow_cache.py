"""Task data as Arrow datasets in datasets' cache, so a second run on the same data reuses the parsed file
and every step after it (each `map` finds its cache file by fingerprint) instead of tokenising again.

  - file_dataset: a .json / .jsonl / .csv / .parquet file through datasets.load_dataset. The project's reader
    (local_files.py) stays the authority on what the file holds: it has read and checked the rows (in the
    CLI's preflight, before torch loads, with file:line errors), and the columns a task uses must read the
    same through datasets. Where they do not -- pyarrow's JSON reader turns ISO-date-like text such as
    "2020-01-02" into timestamps, pandas mangles duplicate CSV headers -- or datasets cannot read the file,
    the reader's rows are used instead (rows_dataset, also cached) and a warning says why.
  - rows_dataset: rows the project's own readers make (GLUE's original TSVs, E2E / DART / WebNLG pairs,
    generated data) through Dataset.from_generator, named by a hash of their content.
  - cached_map / cached_filter: map / filter whose cache key also covers the task code and the library
    versions. datasets hashes a function's own code and closure, but the module-level helpers it calls
    only by name, so without this a change to e.g. causal_lm.join_example would reuse stale token ids.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from functools import cache
from importlib.metadata import version
from pathlib import Path

from datasets import Dataset, Features, Value, load_dataset
from datasets.fingerprint import Hasher

from .rows import Rows

log = logging.getLogger(__name__)

BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


@cache
def code_version() -> str:
    """A digest of this package's task code and of the libraries that parse and tokenise."""
    digest = hashlib.blake2b(digest_size=16)
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    digest.update(" ".join(version(p) for p in ("datasets", "pyarrow", "transformers", "tokenizers")).encode())
    return digest.hexdigest()


def _fingerprint(ds: Dataset, op: str, fn: Callable, kwargs: dict) -> str:
    return Hasher.hash([ds._fingerprint, op, fn, kwargs, code_version()])


def cached_map(ds: Dataset, fn: Callable, **kwargs) -> Dataset:
    return ds.map(fn, new_fingerprint=_fingerprint(ds, "map", fn, kwargs), **kwargs)


def cached_filter(ds: Dataset, fn: Callable, **kwargs) -> Dataset:
    return ds.filter(fn, new_fingerprint=_fingerprint(ds, "filter", fn, kwargs), **kwargs)


def _yield_rows(columns: tuple, values: tuple):
    for row in values:
        yield dict(zip(columns, row))


def rows_dataset(rows: Sequence[dict], features: Features) -> Dataset:
    """The `features` columns of `rows` (a missing key is None) as a cached Arrow dataset; the same rows give
    the same dataset, fingerprint included, in every run."""
    columns = tuple(features)
    values = tuple(tuple(row.get(c) for c in columns) for row in rows)
    content = json.dumps([columns, values, str(features)], ensure_ascii=False, default=repr)
    digest = hashlib.blake2b(content.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    # a tuple, not a list, in gen_kwargs: from_generator would shard a list into one generator call per row
    return Dataset.from_generator(_yield_rows, features=features, gen_kwargs={"columns": columns, "values": values},
                                  fingerprint=Hasher.hash([digest, code_version()]))


def text_features(columns: Sequence[str], **others: Value) -> Features:
    return Features({**{c: Value("string") for c in columns}, **others})


def file_dataset(rows: Rows, features: Features) -> Dataset:
    """The `features` columns of the file `rows` were read from (rows.path), loaded by datasets; the rows
    themselves (rows_dataset) where datasets cannot read the file or reads those columns differently."""
    path = Path(rows.path)
    columns = list(features)
    try:
        ds = _load(path, rows)
    except Exception as e:  # pyarrow, pandas and datasets raise many types; the reader's rows are checked and usable
        return _fallback(rows, features, f"{path}: datasets cannot read it ({type(e).__name__}: {_first_line(e)})")
    ds = ds.select_columns([c for c in columns if c in ds.column_names])
    difference = _difference(ds, rows, columns)
    return _fallback(rows, features, difference) if difference else ds


def _load(path: Path, rows: Rows) -> Dataset:
    builder = BUILDERS[path.suffix]
    options = {}
    if builder == "csv":  # every field as the text the csv module reads: no type guessing, "" and "NA" stay text
        options = {"features": text_features(list(rows[0])), "encoding": "utf-8-sig", "keep_default_na": False, "na_filter": False}
    return load_dataset(builder, data_files={"train": str(path)}, split="train", **options)


def _difference(ds: Dataset, rows: Rows, columns: list[str]) -> str | None:
    """None when `ds` holds exactly the reader's values in `columns` (an absent column: all None)."""
    if len(ds) != len(rows):
        return f"{rows.path}: datasets reads {len(ds)} rows where the reader found {len(rows)}"
    for column in columns:
        got = ds.data.column(column).to_pylist() if column in ds.column_names else [None] * len(ds)
        want = [row.get(column) for row in rows]
        # types too: 1 == 1.0 == True, yet they are different labels
        i = next((i for i, (a, b) in enumerate(zip(got, want)) if type(a) is not type(b) or a != b), None)
        if i is not None:
            return f"{rows.where(i)}: datasets reads column {column!r} as {got[i]!r:.60}, not {want[i]!r:.60}"
    return None


def _fallback(rows: Rows, features: Features, why: str) -> Dataset:
    log.warning("%s; using the rows the project's reader read instead (cached too)", why)
    return rows_dataset(rows, features)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]
