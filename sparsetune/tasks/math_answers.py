"""GSM8K gold answers: the number after an answer's last '####' (the local files' row check, math_files.py).

Model outputs are not scored here: the reported GSM8K numbers are lm-eval's gsm8k / gsm8k_cot with their own
strict-match and flexible-extract filters (evaluation/gsm8k.py).
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation


def to_number(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        return Decimal(text.replace(",", "").replace("$", "").rstrip("."))
    except InvalidOperation:
        return None


def gold_answer(answer: str) -> Decimal:
    """The number after the last '####' of a GSM8K answer."""
    if "####" not in answer:
        raise ValueError(f"a GSM8K answer must end with '#### <number>'; got {answer[-60:]!r}")
    value = to_number(answer.rsplit("####", 1)[1].strip())
    if value is None:
        raise ValueError(f"no number after '####' in {answer[-60:]!r}")
    return value
