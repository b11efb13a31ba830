"""task=codefeedback: query -> answer in Alpaca's no-input template, loss on the answer, the language filter,
local files loaded lazily, bad rows named by file and line."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import compose_cfg
from data_files import jsonl

from sparsetune.errors import ConfigError
from sparsetune.tasks import local_files
from sparsetune.tasks.causal_lm import IGNORE_INDEX
from sparsetune.tasks.code_feedback import load_codefeedback
from sparsetune.tasks.errors import DataError
from sparsetune.tasks.instruction import alpaca_prompt
from sparsetune.tasks.preflight import check_data
from sparsetune.tiny_tokenizer import bytelevel_tokenizer

ROWS = [
    {"query": "Write a Python function that adds two numbers.", "answer": "def add(a, b):\n    return a + b",
     "resource": "MagiCoder", "lang": "python"},
    {"query": "Reverse a string in JavaScript.", "answer": "s.split('').reverse().join('')", "resource": "EvolInstruct",
     "lang": "javascript"},
    {"query": "Square a number in Python.", "answer": "lambda x: x * x", "resource": "MagiCoder", "lang": "Python"},
    {"query": "Select all rows of t.", "answer": "SELECT * FROM t;", "resource": "ShareGPT", "lang": "sql"},
]


@pytest.fixture(scope="module")
def tok():
    return bytelevel_tokenizer()


def split_text(tok, ex) -> tuple[str, str]:
    n = sum(1 for lab in ex["labels"] if lab == IGNORE_INDEX)
    assert ex["labels"][:n] == [IGNORE_INDEX] * n and ex["labels"][n:] == ex["input_ids"][n:]
    return tok.decode(ex["input_ids"][:n]), tok.decode(ex["input_ids"][n:])


def test_query_in_the_alpaca_template_with_loss_on_the_answer(tok, tmp_path, monkeypatch):
    path = tmp_path / "codefeedback.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    monkeypatch.setattr(local_files, "_read_records", lambda p: pytest.fail(f"{p} was read into Python lists"))
    cfg = compose_cfg(["task=codefeedback", f"+task.data_files.train={path}", "task.options.val_set_size=1"])
    data = load_codefeedback(cfg.task, tok, seed=0)
    assert data.info["num_train"] == 3 and data.info["num_eval"] == {"validation": 1}
    assert data.info["prompt_template"] == "stanford_alpaca (no input)" and data.info["languages"] is None
    pairs = {split_text(tok, ex) for ex in [*data.train, *data.eval["validation"]]}
    assert pairs == {(alpaca_prompt(r["query"]), r["answer"] + tok.eos_token) for r in ROWS}
    assert alpaca_prompt(ROWS[0]["query"]).endswith("### Instruction:\nWrite a Python function that adds two numbers.\n\n"
                                                     "### Response:\n")


def test_languages_keep_matching_rows_case_insensitively(tok, tmp_path):
    train = jsonl(tmp_path / "train.jsonl", ROWS)
    valid = jsonl(tmp_path / "valid.jsonl", ROWS[:2])
    cfg = compose_cfg(["task=codefeedback", f"task.data_files={{train: {train}, validation: {valid}}}",
                       "task.options.languages=[python]"])
    data = load_codefeedback(cfg.task, tok, seed=0)
    assert data.info["num_train"] == 2 and data.info["num_eval"] == {"validation": 1} and data.info["languages"] == ["python"]
    assert {split_text(tok, ex)[0] for ex in data.train} == {alpaca_prompt(ROWS[0]["query"]), alpaca_prompt(ROWS[2]["query"])}
    with pytest.raises(ConfigError, match="no CodeFeedback rows"):
        load_codefeedback(compose_cfg(["task=codefeedback", f"+task.data_files.train={train}",
                                       "task.options.languages=[cobol]"]).task, tok, 0)
    with pytest.raises(ConfigError, match=r"languages='python': a non-empty list \(e.g. \[python\]\)"):
        load_codefeedback(compose_cfg(["task=codefeedback", f"+task.data_files.train={train}",
                                       "task.options.languages=python"]).task, tok, 0)


def test_a_row_without_an_answer_is_named_by_file_and_line(tok, tmp_path):
    bad = jsonl(tmp_path / "bad.jsonl", [*ROWS, {"query": "No answer here.", "lang": "python"}])
    cfg = compose_cfg(["task=codefeedback", f"+task.data_files.train={bad}", "task.options.val_set_size=1"])
    with pytest.raises(DataError, match=r"bad.jsonl:5: no column 'answer'"):
        load_codefeedback(cfg.task, tok, 0)
    with pytest.raises(DataError, match=r"bad.jsonl:5: no column 'answer'"):
        check_data(cfg)
