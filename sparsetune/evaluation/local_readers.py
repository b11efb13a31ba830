"""Readers that turn local benchmark files into the hub's documents, for lm-eval's own tasks to read.

lm-eval's task YAML reads the hub's schema (ARC's {question, choices, answerKey}, WinoGrande's {sentence,
option1, option2, answer}, ...); the local copies are in other layouts (see ../shared/data/MANIFEST.md):
- `.jsonl` already in the hub's schema (a HellaSwag, SuperGLUE BoolQ or GSM8K file), checked and passed through;
- LLM-Adapters `test.json` (question and options written into `instruction`, answer like `answer2`);
- ARC csv without header (question,A,B,C,D,answer); MMLU hendrycks csv (<subject>_{dev,test}.csv);
- GLUE RTE tsv.
Each reader returns the documents and the rows it dropped, by reason; a file that cannot serve its task
raises UnusableData (the task is skipped with that reason), a malformed one ValueError naming the line.
"""
from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class UnusableData(ValueError):
    """The file exists and parses but cannot serve the task (e.g. BoolQ without passages)."""


@dataclass
class Converted:
    docs: list[dict]
    fmt: str
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows


# ---- readers: source file -> documents in the hub's schema ----------------------------------------
LETTERS = "ABCDEFGHIJ"
ADAPTERS_QUESTION = re.compile(
    r"^Please choose the correct answer to the question: (?P<q>.*)\n\n(?P<opts>Answer1: .*)\n\n"
    r"Answer format: (?P<fmt>answer\d+(?:/answer\d+)*)$", re.S)
ADAPTERS_WINOGRANDE = re.compile(
    r"^Please choose the correct answer to fill in the blank to complete the given sentence: (?P<s>.*)\n\n"
    r"Option1: (?P<o1>.*) Option2: (?P<o2>.*) Answer format: option1/option2$", re.S)
ADAPTERS_PIQA = re.compile(
    r"^Please choose the correct solution to the question: (?P<goal>.*)\n\nSolution1: (?P<s1>.*)\n\n"
    r"Solution2: (?P<s2>.*)\n\nAnswer format: solution1/solution2$", re.S)


def _adapters_records(path: Path) -> list[dict]:
    records = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(records, list) or not all(isinstance(r, dict) and "instruction" in r and "answer" in r for r in records):
        raise ValueError(f"{path}: expected the LLM-Adapters format, a JSON list of {{instruction, answer, ...}}")
    return records


def _match(rx: re.Pattern, record: dict, path: Path, i: int) -> re.Match:
    m = rx.match(record["instruction"])
    if m is None:
        raise ValueError(f"{path} record {i}: instruction does not have the expected LLM-Adapters layout: "
                         f"{record['instruction'][:120]!r}")
    return m


def _answer_number(record: dict, prefix: str, n: int, path: Path, i: int) -> int:
    """'answer2' -> 2 (1-based), checked against the number of options."""
    m = re.fullmatch(prefix + r"(\d+)", str(record["answer"]).strip())
    if m is None or not 1 <= int(m.group(1)) <= n:
        raise ValueError(f"{path} record {i}: answer {record['answer']!r} is not one of {prefix}1..{prefix}{n}")
    return int(m.group(1))


def _adapters_choices(m: re.Match, path: Path, i: int) -> list[str]:
    parts = re.split(r"(?:^| )Answer(\d+): ", m.group("opts"))
    numbers, texts = [int(p) for p in parts[1::2]], parts[2::2]
    if numbers != list(range(1, len(m.group("fmt").split("/")) + 1)):
        raise ValueError(f"{path} record {i}: options {numbers} do not match the answer format {m.group('fmt')}")
    return texts


def adapters_multiple_choice(path: Path) -> list[tuple[str, list[str], int]]:
    """(question, choices, gold index) of an LLM-Adapters ARC / OpenBookQA / SIQA file."""
    out = []
    for i, r in enumerate(_adapters_records(path)):
        m = _match(ADAPTERS_QUESTION, r, path, i)
        choices = _adapters_choices(m, path, i)
        out.append((m.group("q"), choices, _answer_number(r, "answer", len(choices), path, i) - 1))
    return out


def _labelled(choices: list[str], gold: int) -> dict:
    return {"choices": {"text": choices, "label": list(LETTERS[: len(choices)])}, "answerKey": LETTERS[gold]}


def read_adapters_arc(path: Path) -> Converted:
    docs = [{"id": f"{path.parent.name}-{i}", "question": q, **_labelled(c, g)}
            for i, (q, c, g) in enumerate(adapters_multiple_choice(path))]
    return Converted(docs, "llm-adapters json")


def read_adapters_openbookqa(path: Path) -> Converted:
    docs = [{"id": f"openbookqa-{i}", "question_stem": q, **_labelled(c, g)}
            for i, (q, c, g) in enumerate(adapters_multiple_choice(path))]
    return Converted(docs, "llm-adapters json")


def split_context_question(text: str) -> tuple[str, str]:
    """LLM-Adapters wrote SIQA's context and question as one string joined by a space; split at the last
    sentence end. lm-eval's social_iqa prompt puts the context and the question side by side with that one
    space, so its prompt is exact wherever the boundary falls."""
    m = re.match(r"^(.*[.!?]) (\S.*)$", text, re.S) or re.match(r"^(.*) (\S+)$", text, re.S)
    if m is None:
        raise ValueError(f"cannot split a SIQA context from its question: {text!r}")
    return m.group(1), m.group(2)


def read_adapters_siqa(path: Path) -> Converted:
    docs = []
    for q, choices, gold in adapters_multiple_choice(path):
        if len(choices) != 3:
            raise ValueError(f"{path}: SIQA has 3 options, found {len(choices)} for {q!r}")
        context, question = split_context_question(q)
        docs.append({"context": context, "question": question, "answerA": choices[0], "answerB": choices[1],
                     "answerC": choices[2], "label": str(gold + 1)})
    return Converted(docs, "llm-adapters json")


def read_adapters_winogrande(path: Path) -> Converted:
    docs = []
    for i, r in enumerate(_adapters_records(path)):
        m = _match(ADAPTERS_WINOGRANDE, r, path, i)
        if "_" not in m.group("s"):
            raise ValueError(f"{path} record {i}: WinoGrande sentence has no blank '_': {m.group('s')!r}")
        docs.append({"sentence": m.group("s"), "option1": m.group("o1"), "option2": m.group("o2"),
                     "answer": str(_answer_number(r, "option", 2, path, i))})
    return Converted(docs, "llm-adapters json")


def read_adapters_piqa(path: Path) -> Converted:
    docs = []
    for i, r in enumerate(_adapters_records(path)):
        m = _match(ADAPTERS_PIQA, r, path, i)
        docs.append({"goal": m.group("goal"), "sol1": m.group("s1"), "sol2": m.group("s2"),
                     "label": _answer_number(r, "solution", 2, path, i) - 1})
    return Converted(docs, "llm-adapters json")


def read_boolq_json(path: Path) -> Converted:
    """A JSON list of BoolQ records: usable with passages; the LLM-Adapters copy (question only) is not."""
    records = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(records, list) and records and all(isinstance(r, dict) and {"question", "passage"} <= set(r) for r in records):
        return Converted([boolq_doc(r) for r in records], "boolq json")
    if isinstance(records, list) and records and all(isinstance(r, dict) and "instruction" in r for r in records):
        raise UnusableData(
            f"{path} holds BoolQ questions without their passages (LLM-Adapters dropped them); lm-eval's boolq "
            "prompt starts with the passage, so it cannot be scored without them. Give a SuperGLUE-style BoolQ "
            "validation jsonl with question, passage, label via eval.files.boolq=<path>")
    raise ValueError(f"{path}: expected a JSON list of BoolQ records with question, passage and label")


def read_arc_csv(path: Path) -> Converted:
    """LLMCBench ARC csv: no header, question,A,B,C,D,answer. Empty columns are absent choices; answers are
    letters or 1-based digits. Rows with no choices at all or an answer outside the choices are dropped."""
    docs, dropped = [], Counter()
    with path.open(newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.reader(f)):
            if len(row) != 6:
                raise ValueError(f"{path} line {i + 1}: expected 6 columns (question,A,B,C,D,answer), got {len(row)}")
            question, columns, answer = row[0], row[1:5], row[5].strip()
            present = [(LETTERS[k], text) for k, text in enumerate(columns) if text != ""]
            key = LETTERS[int(answer) - 1] if answer.isdigit() and 1 <= int(answer) <= 9 else answer
            if not present:
                dropped["no choices"] += 1
                continue
            if key not in [letter for letter, _ in present]:
                dropped["answer not among the choices"] += 1
                continue
            docs.append({"id": f"{path.stem}-{i}", "question": question,
                         "choices": {"text": [t for _, t in present], "label": [k for k, _ in present]}, "answerKey": key})
    return Converted(docs, "arc csv", dict(dropped))


def read_mmlu_csv(path: Path) -> Converted:
    """Hendrycks csv <subject>_<split>.csv, no header: question,A,B,C,D,answer-letter -> cais/mmlu's
    {question, subject, choices, answer}."""
    subject = path.stem.rsplit("_", 1)[0]
    docs = []
    with path.open(newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.reader(f)):
            answer = row[5].strip() if len(row) == 6 else None
            if answer not in ("A", "B", "C", "D"):
                raise ValueError(f"{path} line {i + 1}: expected question,A,B,C,D,answer-letter, got {str(row)[:200]}")
            docs.append({"question": row[0], "subject": subject, "choices": row[1:5], "answer": "ABCD".index(answer)})
    return Converted(docs, "mmlu csv")


RTE_LABELS = {"entailment": 0, "not_entailment": 1}


def read_glue_rte_tsv(path: Path) -> Converted:
    """GLUE RTE tsv (index, sentence1, sentence2, label) -> nyu-mll/glue rte {sentence1, sentence2, label, idx}."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header = rows[0]
    if not {"sentence1", "sentence2", "label"} <= set(header):
        raise ValueError(f"{path}: expected a GLUE RTE header with sentence1, sentence2, label; got {header}")
    col = {name: header.index(name) for name in header}
    docs = []
    for i, row in enumerate(rows[1:]):
        label = row[col["label"]].strip()
        if label not in RTE_LABELS:
            raise ValueError(f"{path} line {i + 2}: label {label!r} is not entailment / not_entailment")
        docs.append({"sentence1": row[col["sentence1"]], "sentence2": row[col["sentence2"]], "label": RTE_LABELS[label],
                     "idx": int(row[col["index"]]) if "index" in col else i})
    return Converted(docs, "glue tsv")


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def hub_jsonl(required: tuple[str, ...], normalize: Callable[[dict], dict] = dict) -> Callable[[Path], Converted]:
    """A jsonl already in the hub's schema: check the fields the prompt reads, normalise label types."""
    def read(path: Path) -> Converted:
        docs = []
        for i, doc in enumerate(_read_jsonl(path)):
            missing = [k for k in required if k not in doc]
            if missing:
                raise ValueError(f"{path} line {i + 1}: missing fields {missing}; this task needs {list(required)}")
            try:
                docs.append(normalize(doc))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path} line {i + 1}: {e}") from None
        return Converted(docs, "hub-schema jsonl")
    return read


def boolq_doc(doc: dict) -> dict:
    # SuperGLUE val.jsonl has label: true/false, the original BoolQ release answer: true/false
    label = doc["label"] if "label" in doc else doc.get("answer")
    if label is None:
        raise ValueError(f"BoolQ record needs a label (or answer) field: {str(doc)[:120]}")
    return {"question": doc["question"], "passage": doc["passage"], "label": int(bool(label)), "idx": doc.get("idx", 0)}


def gsm8k_doc(doc: dict) -> dict:
    # lm-eval's gsm8k scores the number after the answer's last '####'
    if not isinstance(doc["answer"], str) or "####" not in doc["answer"]:
        raise ValueError(f"a GSM8K answer ends with '#### <number>'; got {str(doc['answer'])[-60:]!r}")
    return {"question": doc["question"], "answer": doc["answer"]}


def rte_doc(doc: dict) -> dict:
    label = doc["label"]
    return {**doc, "label": RTE_LABELS[label] if isinstance(label, str) and label in RTE_LABELS else int(label)}


MBPP_TEST_IDS = range(11, 511)  # the hub's test split of google-research-datasets/mbpp (config full)


def read_mbpp_jsonl(path: Path) -> Converted:
    """MBPP in the hub's schema: a test-split file, or the original mbpp.jsonl holding every split (its other
    task ids are the prompt / validation / train splits and are dropped)."""
    required = ("task_id", "text", "code", "test_list")
    docs, dropped = [], 0
    for doc in hub_jsonl(required)(path).docs:
        if int(doc["task_id"]) in MBPP_TEST_IDS:
            docs.append({"test_setup_code": "", "challenge_test_list": [], **doc})
        else:
            dropped += 1
    return Converted(docs, "hub-schema jsonl", {"task_id outside the test split (11-510)": dropped} if dropped else {})
