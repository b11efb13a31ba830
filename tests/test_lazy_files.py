"""Large local sets (MetaMathQA here) load lazily: datasets' json loader into its Arrow cache, checked on the
Arrow columns, never read into Python lists; a file those checks reject is read by the project's reader
so the error names its line. The preflight reads only the first rows of such files (file_head.py)."""
import json

import pytest
from conftest import compose_cfg
from data_files import jsonl, write

from sparsetune.tasks import file_head, local_files
from sparsetune.tasks.arrow_cache import text_features
from sparsetune.tasks.errors import DataError
from sparsetune.tasks.file_head import head_rows
from sparsetune.tasks.lazy_files import lazy_dataset
from sparsetune.tasks.math import load_metamathqa, load_splits
from sparsetune.tasks.math_files import check_pairs
from sparsetune.tasks.preflight import check_data
from sparsetune.tiny_tokenizer import bytelevel_tokenizer

GSM8K = [{"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}]


def metamath_rows(n: int) -> list[dict]:
    return [{"query": f"What is {i} + 1?", "response": f"{i} + 1 = {i + 1}. The answer is: {i + 1}",
             "type": "GSM_Rephrased", "original_question": f"{i} + 1?"} for i in range(n)]


def json_list(path, rows):
    return write(path, json.dumps(rows, indent=1))  # MetaMathQA-395K.json is a pretty-printed JSON list


def metamathqa_cfg(train, test, *extra):
    return compose_cfg(["task=metamathqa", f"+task.data_files.train={train}", f"+task.data_files.test={test}",
                        "task.max_length=256", *extra])


def test_metamathqa_train_is_an_arrow_dataset_not_python_lists(tmp_path, monkeypatch):
    train, test = json_list(tmp_path / "MetaMathQA-395K.json", metamath_rows(300)), jsonl(tmp_path / "test.jsonl", GSM8K)
    read = []
    real = local_files._read_records
    monkeypatch.setattr(local_files, "_read_records", lambda p: read.append(p.name) or real(p))
    cfg = metamathqa_cfg(train, test)
    raw, source = load_splits(cfg.task, {"train": ("meta-math/MetaMathQA", None, "train"), "test": ("openai/gsm8k", "main", "test")})
    ds = raw["train"]
    assert type(ds).__name__ == "Dataset" and not isinstance(ds, list)
    assert ds.cache_files and ds.cache_files[0]["filename"].endswith(".arrow")  # memory-mapped from datasets' cache
    assert ds.column_names == ["query", "response"] and len(ds) == 300 and ds[299]["query"] == "What is 299 + 1?"
    assert read == ["test.jsonl"] and source["train"] == str(train)  # only the small GSM8K file went through the reader
    data = load_metamathqa(metamathqa_cfg(train, test, "task.max_train_samples=5").task, bytelevel_tokenizer(), seed=0)
    assert data.info["num_train"] == 5 and data.train.cache_files


def test_a_bad_row_past_the_head_is_named_by_the_loader(tmp_path):
    rows = metamath_rows(150)
    rows[120] = {"query": "No response here."}
    train, test = json_list(tmp_path / "mm.json", rows), jsonl(tmp_path / "test.jsonl", GSM8K)
    cfg = metamathqa_cfg(train, test)
    check_data(cfg)  # the preflight checks the first rows only
    with pytest.raises(DataError, match=r"mm.json:722: no column 'response'"):  # "[" + 120 rows of 6 lines before it
        load_metamathqa(cfg.task, bytelevel_tokenizer(), seed=0)
    rows[3] = {"query": 7, "response": "r"}
    head_bad = json_list(tmp_path / "head.json", rows)
    with pytest.raises(DataError, match=r"head.json:\d+: column 'query' holds 7; expected text"):
        check_data(metamathqa_cfg(head_bad, test))


def test_text_that_datasets_reads_as_dates_falls_back_to_the_readers_rows(tmp_path, caplog):
    rows = [{"query": f"Date {i}?", "response": f"2020-01-0{i + 1}"} for i in range(4)]  # pyarrow: timestamps
    ds = lazy_dataset(jsonl(tmp_path / "dates.jsonl", rows), text_features(["query", "response"]), ("query", "response"),
                      lambda rows, source: check_pairs(rows, ("query", "response"), source))
    assert ds["response"] == [r["response"] for r in rows] and ds.cache_files
    assert "datasets reads column 'response' as datetime" in caplog.text


def test_head_rows_of_each_format(tmp_path, monkeypatch):
    rows = metamath_rows(7)
    monkeypatch.setattr(file_head, "CHUNK", 64)  # forces the JSON list prefix to grow several times
    head = head_rows(json_list(tmp_path / "a.json", rows), 5)
    assert list(head) == rows[:5] and head.where(1) == f"{tmp_path / 'a.json'}:8"
    assert list(head_rows(json_list(tmp_path / "short.json", rows[:2]), 5)) == rows[:2]
    lines = head_rows(write(tmp_path / "b.jsonl", "\n" + "".join(json.dumps(r) + "\n" for r in rows)), 3)
    assert list(lines) == rows[:3] and lines.lines == [2, 3, 4]
    assert list(head_rows(write(tmp_path / "c.json", "".join(json.dumps(r) + "\n" for r in rows)), 2)) == rows[:2]  # JSON lines
    csv = head_rows(write(tmp_path / "d.csv", "query,response\n\"a, b\",c\n\nd,e\n"), 5)
    assert list(csv) == [{"query": "a, b", "response": "c"}, {"query": "d", "response": "e"}] and csv.lines == [2, 4]
    with pytest.raises(DataError, match=r"e.json:3: not valid JSON"):
        head_rows(write(tmp_path / "e.json", '[\n {"query": "a", "response": "b"},\n {"query": "a" "response": "b"}\n]'), 5)
    with pytest.raises(DataError, match=r"f.jsonl:2: not valid JSON"):
        head_rows(write(tmp_path / "f.jsonl", '{"query": "a"}\n{"query": \n'), 5)
