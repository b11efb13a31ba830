"""task=codefeedback's local files and their row check, with the standard library only: the loader
(code_feedback.py) and the CLI's data preflight (preflight.py) share them. Rows are the hub's
(m-a-p/CodeFeedback-Filtered-Instruction): query, answer, and optionally resource and lang."""
from __future__ import annotations

from .errors import DataError
from .file_head import check_heads
from .rows import Rows, require_columns

LAYOUT = {"train": "CodeFeedback-Filtered-Instruction.jsonl", "validation": "validation.jsonl"}  # names in task.data_dir
REQUIRED = ("query", "answer")
OPTIONAL = ("resource", "lang")


def check_rows(rows, source: str = "") -> None:
    """A non-empty list of rows with text in query / answer (resource / lang: text or nothing)."""
    if not isinstance(rows, Rows) or not rows:
        raise DataError(f"{getattr(rows, 'path', source) or 'CodeFeedback data'}: expected a non-empty list of rows with "
                        f"{list(REQUIRED)} (and optionally {list(OPTIONAL)})")
    require_columns(rows, list(REQUIRED), optional=OPTIONAL, source=source)


def check_local(task) -> None:
    """The data preflight: the first rows of each local split (the files are loaded lazily)."""
    check_heads(task, LAYOUT, check_rows)
