"""GSM8K answers: the gold number, the number a model wrote, and the few-shot chain-of-thought prompt.

Two extractions, as lm-eval's gsm8k / gsm8k_cot report them:
  - strict: the number after "#### " or "The answer is" (MetaMathQA writes "The answer is: N"); lm-eval's
    cot regex also demands a trailing ".", ours does not.
  - flexible: the last number in the text. lm-eval's pattern also accepts digit-free runs such as ".."; ours
    needs a digit.
Comparison is numeric ("1,234" = "1234.0" = "$1234"), where lm-eval compares strings after dropping ",",
"$" and a trailing "." (so "18.00" would miss there and hits here).
"""
from __future__ import annotations

import importlib.util
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ..errors import ConfigError

NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"
STRICT = [re.compile(r"####\s*(" + NUMBER + ")"), re.compile(r"[Tt]he answer is:?\s*(" + NUMBER + ")")]
ANY_NUMBER = re.compile(NUMBER)


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


def strict_answer(text: str) -> Decimal | None:
    for pattern in STRICT:
        m = pattern.search(text)
        if m:
            return to_number(m.group(1))
    return None


def flexible_answer(text: str) -> Decimal | None:
    found = ANY_NUMBER.findall(text)
    return to_number(found[-1]) if found else None


def same_number(pred: Decimal | None, gold: Decimal) -> bool:
    return pred is not None and pred == gold


def cot_exemplars(n: int) -> list[dict]:
    """The first n of lm-eval's gsm8k_cot exemplars (Wei et al.'s 8 chain-of-thought examples), read from
    the installed lm-eval so the prompt is exactly the one its gsm8k_cot task uses."""
    import yaml

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("task.options.eval_prompt=cot needs lm-eval installed (its gsm8k-cot.yaml); or use eval_prompt=train")
    path = Path(list(spec.submodule_search_locations)[0]) / "tasks" / "gsm8k" / "gsm8k-cot.yaml"
    samples = yaml.safe_load(path.read_text())["fewshot_config"]["samples"]
    if not 0 <= n <= len(samples):
        raise ConfigError(f"task.options.num_fewshot={n}: must be in [0, {len(samples)}] for the cot prompt")
    return samples[:n]


def cot_prompt(question: str, shots: list[dict]) -> str:
    """lm-eval gsm8k_cot layout: 'Q: ..\\nA: ..' blocks joined by a blank line, ending in 'Q: <question>\\nA:'."""
    blocks = [f"Q: {s['question']}\nA: {s['target']}" for s in shots]
    return "\n\n".join([*blocks, f"Q: {question}\nA:"])
