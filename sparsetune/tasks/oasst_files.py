"""task=oasst2's local files and their row check, with the standard library only: the loader (oasst.py) and
the CLI's data preflight (preflight.py) share them.

A file holds the hub's message rows (OpenAssistant/oasst2 as .parquet, or its .jsonl / .json export): one row
per message with message_id, parent_id (null for a tree's first prompt), role (prompter | assistant), text,
and optionally lang, rank (0 = the best-ranked sibling), deleted, review_result, message_tree_id.
"""
from __future__ import annotations

from numbers import Real

from .errors import DataError
from .file_head import check_heads
from .rows import Rows, require_columns, where

LAYOUT = {"train": "train.jsonl", "validation": "validation.jsonl"}  # file names in task.data_dir
REQUIRED = ("message_id", "role", "text")
OPTIONAL_TEXT = ("parent_id", "lang", "message_tree_id")
FLAGS = ("deleted", "review_result")
ROLES = ("prompter", "assistant")


def check_messages(rows, source: str = "") -> None:
    """A non-empty list of message rows; a row the threading cannot use is a DataError naming it."""
    if not isinstance(rows, Rows) or not rows:
        raise DataError(f"{getattr(rows, 'path', source) or 'OASST2 data'}: expected a non-empty list of message rows with "
                        f"{list(REQUIRED)} (and optionally {[*OPTIONAL_TEXT, 'rank', *FLAGS]})")
    require_columns(rows, list(REQUIRED), optional=OPTIONAL_TEXT, source=source)
    for i, row in enumerate(rows):
        if row["role"] not in ROLES:
            raise DataError(f"{where(rows, i, source)}: column 'role' holds {row['role']!r}; expected one of {list(ROLES)}")
        rank = row.get("rank")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, Real) or not float(rank).is_integer()):
            raise DataError(f"{where(rows, i, source)}: column 'rank' holds {rank!r}; expected a whole number or null")
        for flag in FLAGS:
            if row.get(flag) is not None and not isinstance(row[flag], bool):
                raise DataError(f"{where(rows, i, source)}: column {flag!r} holds {row[flag]!r}; expected true, false or null")


def check_local(task) -> None:
    """The data preflight: the first rows of each local split (the files are loaded lazily)."""
    check_heads(task, LAYOUT, check_messages)
