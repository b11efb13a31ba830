"""lm-eval tasks on local files: convert them to the hub's document schema, pair them with lm-eval's prompts.

Each task below carries the prompt/metric fields of lm-eval 0.4.13's built-in YAML (named in `builtin`;
tests/test_local_tasks.py checks every field against the installed file), so a local run scores the
same prompts as `lm_eval --tasks <name>` would on the hub copy. Only the dataset fields change:
`dataset_path: json` with absolute `data_files` pointing at jsonl files written here.

Source formats understood (see ../shared/data/MANIFEST.md for the quirks):
- `.jsonl` in the hub's schema (e.g. a HellaSwag or SuperGLUE BoolQ validation file), passed through;
- LLM-Adapters `test.json` (question and options written into `instruction`, answer like `answer2`);
- ARC csv without header (question,A,B,C,D,answer); MMLU csv dirs (<subject>_{dev,test}.csv);
- GLUE RTE tsv.
A task whose eval split has no usable file is skipped with the reason; it never runs on faked data.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lm_eval.tasks.hellaswag.utils import process_docs as hellaswag_process_docs
from lm_eval.tasks.winogrande import preprocess_winogrande as winogrande_fns


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
    sentence end. lm-eval's prompt "Q: {{context}} {{question}}" re-joins with that space, so the prompt is
    exact wherever the boundary falls."""
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
        return Converted([_boolq_doc(r) for r in records], "boolq json")
    if isinstance(records, list) and records and all(isinstance(r, dict) and "instruction" in r for r in records):
        raise UnusableData(
            f"{path} holds BoolQ questions without their passages (LLM-Adapters dropped them); lm-eval's boolq "
            "prompt is '{{passage}}\\nQuestion: {{question}}?' and cannot be scored without them. Give a "
            "SuperGLUE-style BoolQ validation jsonl with question, passage, label via eval.files.boolq=<path>")
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


def read_mmlu_csv(path: Path, subject: str) -> Converted:
    """Hendrycks csv, no header: question,A,B,C,D,answer-letter -> cais/mmlu's {question, subject, choices, answer}."""
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
            docs.append(normalize(doc))
        return Converted(docs, "hub-schema jsonl")
    return read


def _boolq_doc(doc: dict) -> dict:
    # SuperGLUE val.jsonl has label: true/false, the original BoolQ release answer: true/false
    label = doc["label"] if "label" in doc else doc.get("answer")
    if label is None:
        raise ValueError(f"BoolQ record needs a label (or answer) field: {str(doc)[:120]}")
    return {"question": doc["question"], "passage": doc["passage"], "label": int(bool(label)), "idx": doc.get("idx", 0)}


def _rte_doc(doc: dict) -> dict:
    label = doc["label"]
    return {**doc, "label": RTE_LABELS[label] if isinstance(label, str) and label in RTE_LABELS else int(label)}


# ---- lm-eval 0.4.13 prompts and metrics (copied from the built-in YAML named in `builtin`) --------------
ACC = {"metric": "acc", "aggregation": "mean", "higher_is_better": True}
ACC_NORM = {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}
MC = {"output_type": "multiple_choice", "training_split": "train", "validation_split": "validation"}

ARC_TEMPLATE = {
    **MC, "test_split": "test", "doc_to_text": "Question: {{question}}\nAnswer:",
    "doc_to_target": "{{choices.label.index(answerKey)}}", "doc_to_choice": "{{choices.text}}",
    "should_decontaminate": True, "doc_to_decontamination_query": "Question: {{question}}\nAnswer:",
    "metric_list": [ACC, ACC_NORM], "metadata": {"version": 1.0},
}
TEMPLATES = {
    "arc_easy": ARC_TEMPLATE,
    "arc_challenge": ARC_TEMPLATE,
    "openbookqa": {
        **MC, "test_split": "test", "doc_to_text": "question_stem",
        "doc_to_target": "{{choices.label.index(answerKey.lstrip())}}", "doc_to_choice": "{{choices.text}}",
        "should_decontaminate": True, "doc_to_decontamination_query": "question_stem",
        "metric_list": [ACC, ACC_NORM], "metadata": {"version": 1.0},
    },
    "winogrande": {
        **MC, "doc_to_text": winogrande_fns.doc_to_text, "doc_to_target": winogrande_fns.doc_to_target,
        "doc_to_choice": winogrande_fns.doc_to_choice, "should_decontaminate": True,
        "doc_to_decontamination_query": "sentence", "metric_list": [ACC], "metadata": {"version": 1.0},
    },
    "piqa": {
        **MC, "test_split": None, "doc_to_text": "Question: {{goal}}\nAnswer:", "doc_to_target": "label",
        "doc_to_choice": "{{[sol1, sol2]}}", "should_decontaminate": True, "doc_to_decontamination_query": "goal",
        "metric_list": [ACC, ACC_NORM], "metadata": {"version": 1.0},
    },
    "social_iqa": {
        **MC, "doc_to_text": "Q: {{context}} {{question}}\nA:", "target_delimiter": " ",
        "doc_to_choice": "{{[answerA, answerB, answerC]}}", "doc_to_target": "{{ (label|int) - 1 }}",
        "metric_list": [ACC], "metadata": {"version": 0.0},
    },
    "boolq": {
        **MC, "doc_to_text": "{{passage}}\nQuestion: {{question}}?\nAnswer:", "doc_to_target": "label",
        "doc_to_choice": ["no", "yes"], "should_decontaminate": True, "doc_to_decontamination_query": "passage",
        "metric_list": [{"metric": "acc"}], "metadata": {"version": 2.0},
    },
    "rte": {
        **MC, "doc_to_text": "{{sentence1}}\nQuestion: {{sentence2}} True or False?\nAnswer:", "doc_to_target": "label",
        "doc_to_choice": ["True", "False"], "metric_list": [{"metric": "acc"}], "metadata": {"version": 1.0},
    },
    "hellaswag": {
        **MC, "test_split": None, "process_docs": hellaswag_process_docs, "doc_to_text": "{{query}}",
        "doc_to_target": "{{label}}", "doc_to_choice": "choices", "metric_list": [ACC, ACC_NORM],
        "metadata": {"version": 1.0},
    },
}
MMLU_TEMPLATE = {
    "test_split": "test", "fewshot_split": "dev", "fewshot_config": {"sampler": "first_n"},
    "output_type": "multiple_choice",
    "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:",
    "doc_to_choice": ["A", "B", "C", "D"], "doc_to_target": "answer", "metric_list": [ACC], "metadata": {"version": 1.0},
}
MMLU_GROUP_VERSION = 2
MMLU_CATEGORIES = {  # category -> subjects, as the tags of lm_eval/tasks/mmlu/default/mmlu_<subject>.yaml
    "stem": ["abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry",
             "college_computer_science", "college_mathematics", "college_physics", "computer_security",
             "conceptual_physics", "electrical_engineering", "elementary_mathematics", "high_school_biology",
             "high_school_chemistry", "high_school_computer_science", "high_school_mathematics", "high_school_physics",
             "high_school_statistics", "machine_learning"],
    "other": ["business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
              "management", "marketing", "medical_genetics", "miscellaneous", "nutrition", "professional_accounting",
              "professional_medicine", "virology"],
    "social_sciences": ["econometrics", "high_school_geography", "high_school_government_and_politics",
                        "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology",
                        "human_sexuality", "professional_psychology", "public_relations", "security_studies",
                        "sociology", "us_foreign_policy"],
    "humanities": ["formal_logic", "high_school_european_history", "high_school_us_history",
                   "high_school_world_history", "international_law", "jurisprudence", "logical_fallacies",
                   "moral_disputes", "moral_scenarios", "philosophy", "prehistory", "professional_law",
                   "world_religions"],
}


def mmlu_description(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


# ---- where each task's files live under data_dir, and how to read them --------------------------------
@dataclass(frozen=True)
class TaskSpec:
    name: str
    builtin: str  # the template's origin inside lm_eval/tasks/
    eval_split: str  # the split lm-eval scores (test if the task has one, else validation)
    layout: dict[str, tuple[str, ...]]  # split -> candidate files relative to data_dir, first found wins
    readers: dict[str, Callable[[Path], Converted]]  # file suffix -> reader

    @property
    def template(self) -> dict:
        return TEMPLATES[self.name]

    @property
    def fewshot_split(self) -> str:
        return self.template.get("fewshot_split") or self.template["training_split"]


def _arc(name: str, folder: str) -> TaskSpec:
    base = f"commonsense/{folder}"
    return TaskSpec(name, "arc/arc_easy.yaml" if name == "arc_easy" else "arc/arc_challenge.yaml", "test",
                    {"test": (f"{base}/test.jsonl", f"{base}/test.json"), "train": (f"{base}/train.jsonl", f"{base}/train.csv")},
                    {".jsonl": hub_jsonl(("question", "choices", "answerKey")), ".json": read_adapters_arc, ".csv": read_arc_csv})


def _adapters(name: str, builtin: str, split: str, folder: str, required: tuple, reader) -> TaskSpec:
    base = f"commonsense/{folder}"
    return TaskSpec(name, builtin, split, {split: (f"{base}/{split}.jsonl", f"{base}/test.json"), "train": (f"{base}/train.jsonl",)},
                    {".jsonl": hub_jsonl(required), ".json": reader})


TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in [
    _arc("arc_easy", "ARC-Easy"),
    _arc("arc_challenge", "ARC-Challenge"),
    _adapters("openbookqa", "openbookqa/openbookqa.yaml", "test", "openbookqa", ("question_stem", "choices", "answerKey"),
              read_adapters_openbookqa),
    # LLM-Adapters calls the dev splits "test.json"; they are lm-eval's validation splits
    _adapters("winogrande", "winogrande/default.yaml", "validation", "winogrande", ("sentence", "option1", "option2", "answer"),
              read_adapters_winogrande),
    _adapters("piqa", "piqa/piqa.yaml", "validation", "piqa", ("goal", "sol1", "sol2", "label"), read_adapters_piqa),
    _adapters("social_iqa", "siqa/siqa.yaml", "validation", "social_i_qa",
              ("context", "question", "answerA", "answerB", "answerC", "label"), read_adapters_siqa),
    TaskSpec("boolq", "super_glue/boolq/default.yaml", "validation",
             {"validation": ("boolq/val.jsonl", "boolq/validation.jsonl", "commonsense/boolq/val.jsonl",
                             "commonsense/boolq/validation.jsonl", "commonsense/boolq/test.json"),
              "train": ("boolq/train.jsonl", "commonsense/boolq/train.jsonl")},
             {".jsonl": hub_jsonl(("question", "passage"), _boolq_doc), ".json": read_boolq_json}),
    TaskSpec("rte", "glue/rte/default.yaml", "validation",
             {"validation": ("glue/RTE/dev.tsv", "glue/RTE/validation.jsonl"), "train": ("glue/RTE/train.tsv", "glue/RTE/train.jsonl")},
             {".tsv": read_glue_rte_tsv, ".jsonl": hub_jsonl(("sentence1", "sentence2", "label"), _rte_doc)}),
    TaskSpec("hellaswag", "hellaswag/hellaswag.yaml", "validation",
             {"validation": ("hellaswag/hellaswag_val.jsonl", "hellaswag/validation.jsonl",
                             "commonsense/hellaswag/validation.jsonl"),
              "train": ("hellaswag/hellaswag_train.jsonl", "hellaswag/train.jsonl")},
             {".jsonl": hub_jsonl(("activity_label", "ctx_a", "ctx_b", "endings", "label"))}),
]}
LOCAL_TASK_NAMES = sorted([*TASKS, "mmlu"])


# ---- building the suite ----------------------------------------------------------------------------------
@dataclass
class GroupSpec:
    """An lm-eval group (MMLU and its categories): children are task configs or subgroups."""
    name: str
    alias: str
    children: list
    version: float
    aggregate: list = field(default_factory=lambda: [{"metric": "acc", "weight_by_size": True}])


@dataclass
class LocalSuite:
    specs: dict[str, dict | GroupSpec] = field(default_factory=dict)  # task name -> lm-eval config / group
    data: dict[str, dict] = field(default_factory=dict)  # task name -> files, hashes, rows, dropped rows
    skipped: dict[str, str] = field(default_factory=dict)  # task name -> reason


def write_jsonl(docs: list[dict], folder: Path, split: str) -> tuple[Path, str]:
    """Content-addressed jsonl (same docs -> same path, so the datasets cache is reused)."""
    payload = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")
    digest = hashlib.sha256(payload).hexdigest()
    path = folder / f"{split}-{digest[:16]}.jsonl"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_bytes(payload)
        tmp.replace(path)
    return path, digest


def read_source(spec: TaskSpec, path: Path) -> Converted:
    reader = spec.readers.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{spec.name}: cannot read {path} (suffix {path.suffix!r}); accepted: {sorted(spec.readers)}")
    return reader(path)


def locate(layout: dict[str, tuple[str, ...]], data_dir: Path | None) -> dict[str, Path]:
    found = {}
    for split, candidates in layout.items():
        for rel in candidates if data_dir else ():
            if (data_dir / rel).is_file():
                found[split] = data_dir / rel
                break
    return found


def task_config(name: str, template: dict, files: dict[str, Path], work_dir: Path, num_fewshot: int, **extra) -> dict:
    """lm-eval's template with the dataset swapped for local jsonl files; splits without a file are unset."""
    config = {"task": name, **template, **extra, "dataset_path": "json", "dataset_name": None,
              "dataset_kwargs": {"data_files": {s: str(p) for s, p in files.items()}, "cache_dir": str(work_dir / "hf_datasets")},
              "num_fewshot": num_fewshot, "metadata": dict(template["metadata"])}
    for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
        if config.get(key) is not None and config[key] not in files:
            config[key] = None
    return config


def build_task(spec: TaskSpec, data_dir: Path | None, override: str | None, work_dir: Path, num_fewshot: int) -> tuple[dict, dict]:
    sources = locate(spec.layout, data_dir)
    if override:
        sources[spec.eval_split] = Path(override).expanduser()
        if not sources[spec.eval_split].is_file():
            raise ValueError(f"eval.files.{spec.name}={override} does not exist")
    if spec.eval_split not in sources:
        looked = ", ".join(spec.layout[spec.eval_split])
        raise UnusableData(f"no local file for {spec.name}'s {spec.eval_split} split under eval.data_dir={data_dir} "
                           f"(looked for {looked}); give one with eval.files.{spec.name}=<path>")
    needed = [spec.eval_split] + ([spec.fewshot_split] if num_fewshot > 0 else [])
    if num_fewshot > 0 and spec.fewshot_split not in sources:
        raise ValueError(f"{spec.name} with num_fewshot={num_fewshot} draws examples from its {spec.fewshot_split} split "
                         f"(as lm-eval does), but none was found (looked for {', '.join(spec.layout.get(spec.fewshot_split, ()))})")
    converted_files, data = {}, {"source": {}, "format": {}, "rows": {}, "dropped": {}, "sha256": {}, "converted": {}}
    for split in needed:
        conv = read_source(spec, sources[split])
        if not conv.docs:
            raise UnusableData(f"{sources[split]} has no usable rows for {spec.name} (dropped: {conv.dropped})")
        path, digest = write_jsonl(conv.docs, work_dir / spec.name, split)
        converted_files[split] = path
        data["source"][split], data["format"][split], data["rows"][split] = str(sources[split]), conv.fmt, len(conv.docs)
        data["dropped"][split], data["sha256"][split], data["converted"][split] = conv.dropped, digest, str(path)
    data["template"] = f"lm_eval/tasks/{spec.builtin}"
    return task_config(spec.name, spec.template, converted_files, work_dir, num_fewshot), data


def build_mmlu(data_dir: Path | None, override: str | None, work_dir: Path, num_fewshot: int) -> tuple[GroupSpec, dict]:
    root = Path(override).expanduser() if override else (data_dir / "mmlu" if data_dir else None)
    if root is None or not (root / "test").is_dir():
        raise UnusableData(f"no MMLU test dir at {root}/test (hendrycks layout <subject>_test.csv); "
                           "give the mmlu dir with eval.files.mmlu=<dir> or set eval.data_dir")
    categories, digests = [], {}
    data = {"source": str(root), "format": "mmlu csv", "rows": {"test": 0, "dev": 0}, "subjects": 0, "missing_subjects": [],
            "template": "lm_eval/tasks/mmlu/default/_default_template_yaml"}
    for category, subjects in MMLU_CATEGORIES.items():
        children = []
        for subject in subjects:
            test = root / "test" / f"{subject}_test.csv"
            if not test.is_file():
                data["missing_subjects"].append(subject)
                continue
            files = {"test": test}
            dev = root / "dev" / f"{subject}_dev.csv"
            if num_fewshot > 0:
                if not dev.is_file():
                    raise ValueError(f"MMLU {num_fewshot}-shot takes its examples from {dev}, which does not exist")
                files["dev"] = dev
            converted = {}
            for split, src in files.items():
                docs = read_mmlu_csv(src, subject).docs
                converted[split], digest = write_jsonl(docs, work_dir / "mmlu" / subject, split)
                data["rows"][split] += len(docs)
                digests.setdefault(split, []).append(digest)
            children.append(task_config(f"mmlu_{subject}", MMLU_TEMPLATE, converted, work_dir, num_fewshot,
                                        task_alias=subject, description=mmlu_description(subject)))
            data["subjects"] += 1
        if children:
            categories.append(GroupSpec(f"mmlu_{category}", category.replace("_", " "), children, MMLU_GROUP_VERSION))
    if not categories:
        raise UnusableData(f"no MMLU subject files (<subject>_test.csv) in {root}/test")
    # one digest per split: sha256 over the subjects' converted-file digests, in the category order above
    data["sha256"] = {split: hashlib.sha256("".join(d).encode()).hexdigest() for split, d in digests.items()}
    return GroupSpec("mmlu", "mmlu", categories, MMLU_GROUP_VERSION), data


def build_local_suite(names: list[str], data_dir: str | None, files: dict[str, str], work_dir: str | Path,
                      num_fewshot: dict[str, int], strict: bool = False) -> LocalSuite:
    """Convert and configure every named task; tasks without usable data are skipped with the reason
    (or raise, with strict=True)."""
    unknown = [n for n in names if n not in LOCAL_TASK_NAMES]
    if unknown:
        raise ValueError(f"no local definition for tasks {unknown}; local tasks: {LOCAL_TASK_NAMES}")
    root = Path(data_dir).expanduser() if data_dir else None
    if root is not None and not root.is_dir():
        raise ValueError(f"eval.data_dir={data_dir} is not a directory")
    work_dir = Path(work_dir).expanduser()
    suite = LocalSuite()
    for name in names:
        try:
            if name == "mmlu":
                spec, data = build_mmlu(root, files.get(name), work_dir, num_fewshot.get(name, 0))
            else:
                spec, data = build_task(TASKS[name], root, files.get(name), work_dir, num_fewshot.get(name, 0))
        except UnusableData as e:
            if strict:
                raise
            suite.skipped[name] = str(e)
            continue
        suite.specs[name], suite.data[name] = spec, data
    return suite
