"""Labels of classification / regression rows, checked right after loading (before the model sees a batch):
a class id must be in the task's label set (a label of 7 for two classes would otherwise stop the first
training step with torch's "Target 7 is out of bounds"), a score must be a finite number. Rows without a
label are dropped and counted (task.missing_labels=drop) or refused with their file and line (=error)."""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from numbers import Integral

from ..errors import ConfigError
from .errors import DataError

MISSING_POLICIES = ("drop", "error")
INTEGER = re.compile(r"-?[0-9]+")
HUB_NO_LABEL = -1  # the hub's GLUE test splits mark unlabelled rows with -1
NO_LABEL = "no label"  # the reason recorded in data.dropped_rows

log = logging.getLogger(__name__)


def allowed_labels(num_labels: int | None, words: dict[str, int] | None) -> str:
    ids = f"0..{num_labels - 1}" if num_labels else "an integer class id"
    if words:
        return f"one of {', '.join(words)} (or their ids {ids})"
    return f"a class id in {ids} (task.num_labels={num_labels})" if num_labels else ids


def parse_label(value, *, regression: bool, num_labels: int | None = None, words: dict[str, int] | None = None):
    """The label as the model takes it: a class id (int) or a score (float); None when the row has none
    (empty text, null, or the hub's -1 for a class). Raises ValueError saying what was expected."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if regression:
        try:
            score = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            raise ValueError(f"label {value!r} is not a finite number; a regression task needs a finite score")
        return score
    label = value
    if isinstance(value, str):
        text = value.strip()
        label = words[text] if words and text in words else int(text) if INTEGER.fullmatch(text) else None
    elif isinstance(value, float) and value.is_integer():
        label = int(value)
    if isinstance(label, bool) or not isinstance(label, Integral):
        raise ValueError(f"label {value!r} is not one of the task's labels; expected {allowed_labels(num_labels, words)}")
    if label == HUB_NO_LABEL:
        return None
    if label < 0 or (num_labels and label >= num_labels):
        raise ValueError(f"label {value!r} is outside the task's label set; expected {allowed_labels(num_labels, words)}")
    return int(label)


def check_policy(policy: str) -> None:
    if policy not in MISSING_POLICIES:
        raise ConfigError(f"task.missing_labels={policy!r} is not one of {list(MISSING_POLICIES)}")


def labelled(values: list, where: Callable[[int], str], *, split: str, regression: bool, num_labels: int | None,
             words: dict[str, int] | None, policy: str) -> tuple[list, list[int]]:
    """(the parsed labels, the indices of the rows that have one). A bad label, or a missing one under
    task.missing_labels=error, is a DataError naming the row, the split and what the task allows."""
    check_policy(policy)
    parsed, keep = [], []
    for i, value in enumerate(values):
        try:
            label = parse_label(value, regression=regression, num_labels=num_labels, words=words)
        except ValueError as e:
            raise DataError(f"{where(i)}: split {split!r}: {e}") from None
        if label is None and policy == "error":
            raise DataError(f"{where(i)}: split {split!r}: the row has no label and task.missing_labels=error refuses "
                            "such rows; label or remove it, or set task.missing_labels=drop")
        if label is not None:
            keep.append(i)
        parsed.append(label)
    return parsed, keep


def warn_dropped(task_name: str, split: str, dropped: int, total: int) -> None:
    if dropped:
        log.warning("task %s: dropped %d of %d rows of split %r that have no label (recorded in data.dropped_rows; "
                    "task.missing_labels=error refuses them instead)", task_name, dropped, total, split)
