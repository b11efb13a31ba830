"""Bad data and bad model directories fail as one line naming the file, the line and what was expected
(a ConfigError, so the CLI exits 2); rows without a label are dropped, counted and warned about, or refused."""
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CONF, TINY, compose_cfg
from data_files import jsonl, sst2_tsv, write
from datasets import Dataset

from sparsetune.errors import ConfigError
from sparsetune.models import check_model_dir
from sparsetune.models import load as load_model
from sparsetune.run import run
from sparsetune.tasks.data_to_text import load_e2e
from sparsetune.tasks.errors import DataError
from sparsetune.tasks.glue import labelled_split, load_glue
from sparsetune.tasks.glue_files import read_split
from sparsetune.tasks.instruction import load_alpaca
from sparsetune.tasks.local_files import read_records
from sparsetune.tasks.math import load_gsm8k
from sparsetune.tiny_tokenizer import bytelevel_tokenizer, wordpiece_tokenizer
from sparsetune.validate import check

ROOT = Path(CONF).parent


@pytest.fixture(scope="module")
def wordpiece():
    return wordpiece_tokenizer()


@pytest.fixture(scope="module")
def bytelevel():
    return bytelevel_tokenizer()


def glue_task(*overrides):
    return compose_cfg(["model=tiny-bert", *overrides]).task


# --- corrupt GLUE TSVs: file, line, what was expected ---------------------------------------------------------

def test_word_label_outside_the_task_label_set_names_file_line_and_labels(tmp_path, wordpiece):
    write(tmp_path / "SST-2/train.tsv", sst2_tsv(["1", "neg", "0"]))
    with pytest.raises(DataError, match=r"SST-2/train.tsv:3: label 'neg' is not one of the task's labels; "
                                        r"expected a class id in 0..1 \(task.num_labels=2\)"):
        read_split(tmp_path, "sst2", "train", False, num_labels=2)
    write(tmp_path / "RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n1\tC.\tD.\tEntailment\n")
    with pytest.raises(DataError, match=r"RTE/dev.tsv:3: .*'Entailment'.*one of entailment, not_entailment"):
        load_glue(glue_task("task=glue/rte", "task.eval_splits=[validation]", "task.train_split=validation",
                            f"task.data_dir={tmp_path}"), wordpiece, 0)


def test_short_line_and_empty_file_name_what_was_expected(tmp_path):
    write(tmp_path / "SST-2/train.tsv", "sentence\tlabel\na fine film .\t1\nno label column here\n")
    with pytest.raises(DataError, match=r"SST-2/train.tsv:3: 1 tab-separated field\(s\); expected at least 2 \(sentence, label\)"):
        read_split(tmp_path, "sst2", "train", False)
    write(tmp_path / "SST-2/dev.tsv", "")
    with pytest.raises(DataError, match=r"SST-2/dev.tsv: empty file; expected a header line"):
        read_split(tmp_path, "sst2", "validation", False)
    write(tmp_path / "MRPC/train.tsv", "Quality\tsentence1\n1\tA.\n")
    with pytest.raises(DataError, match=r"MRPC/train.tsv:1: unexpected header"):
        read_split(tmp_path, "mrpc", "train", False)


# --- malformed data files given with task.data_files -----------------------------------------------------------

def test_malformed_json_jsonl_csv_parquet_name_file_and_line(tmp_path):
    cases = {
        write(tmp_path / "a.json", '[\n  {"instruction": "x", "output": "y"},\n  {"instruction": "x" "output": "y"}\n]'):
            r"a.json:3: not valid JSON \(Expecting ',' delimiter",
        write(tmp_path / "b.jsonl", '{"question": "q", "answer": "#### 1"}\n{"question": "q", "answer"\n'):
            r"b.jsonl:2: not valid JSON .*one JSON object per line",
        write(tmp_path / "c.jsonl", '{"question": "q"}\n\n[1, 2]\n'): r"c.jsonl:3: expected a JSON object",
        write(tmp_path / "d.csv", 'mr,ref\n"name[A]",A.\n"name[B]",B.,extra\n'):
            r"d.csv:3: 3 field\(s\) where the header has 2 \(mr, ref\)",
        write(tmp_path / "e.parquet", "not parquet at all"): r"e.parquet: not a readable parquet file",
    }
    (tmp_path / "f.jsonl").write_bytes(b'{"question": "caf\xe9"}\n')
    cases[tmp_path / "f.jsonl"] = r"f.jsonl: not UTF-8 text"
    for path, message in cases.items():
        with pytest.raises(DataError, match=message):
            read_records(path)


def test_json_lines_in_a_json_file_are_read_as_jsonl(tmp_path):
    path = jsonl(tmp_path / "to_json_output.json", [{"a": 1}, {"a": 2}])  # what datasets' Dataset.to_json writes
    assert read_records(path) == [{"a": 1}, {"a": 2}]


def test_task_loaders_name_the_bad_row(tmp_path, bytelevel, wordpiece):
    alpaca = write(tmp_path / "alpaca.json", json.dumps([{"instruction": "i", "output": "o"}] * 2 + [{"instruction": "i"}],
                                                        indent=1))
    with pytest.raises(DataError, match=r"alpaca.json:10: no column 'output'"):
        load_alpaca(compose_cfg(["task=alpaca", f"+task.data_files.train={alpaca}"]).task, bytelevel, 0)

    good = {"question": "q", "answer": "so #### 4"}
    test = jsonl(tmp_path / "test.jsonl", [good, {"question": "q", "answer": "no final number"}])
    with pytest.raises(DataError, match=r"test.jsonl:2: a GSM8K answer must end with '#### <number>'"):
        load_gsm8k(compose_cfg(["task=gsm8k", f"+task.data_files.train={test}", f"+task.data_files.test={test}"]).task,
                   bytelevel, 0)
    train = jsonl(tmp_path / "train.jsonl", [good, {"question": 3, "answer": "#### 1"}])
    with pytest.raises(DataError, match=r"train.jsonl:2: column 'question' holds 3; expected text"):
        load_gsm8k(compose_cfg(["task=gsm8k", f"+task.data_files.train={train}", f"+task.data_files.test={test}"]).task,
                   bytelevel, 0)

    e2e = write(tmp_path / "e2e.csv", 'mr,ref\n"name[A]",A.\n"name[B], broken",B.\n')
    with pytest.raises(DataError, match=r"e2e.csv:3: expected an E2E row.*cannot parse the E2E meaning representation"):
        load_e2e(compose_cfg(["task=e2e", f"+task.data_files.train={e2e}", f"+task.data_files.validation={e2e}",
                              f"+task.data_files.test={e2e}"]).task, bytelevel, 0)

    sst = jsonl(tmp_path / "sst.jsonl", [{"sentence": "a", "label": 1}, {"text": "b", "label": 0}])
    with pytest.raises(DataError, match=r"sst.jsonl:2: no column 'sentence'"):
        load_glue(glue_task("task=glue/sst2", f"task.data_files={{train: {sst}, validation: {sst}}}"), wordpiece, 0)


# --- labels outside the task's label set: checked right after loading ------------------------------------------

@pytest.mark.parametrize("task,label,message", [
    ("glue/sst2", 7, r"bad.jsonl:3: split 'train': label 7 is outside the task's label set; expected a class id in 0..1"),
    ("glue/sst2", "pos", r"bad.jsonl:3: split 'train': label 'pos' is not one of the task's labels"),
    ("glue/sst2", 1.5, r"bad.jsonl:3: split 'train': label 1.5 is not one of the task's labels"),
    ("glue/stsb", "NaN", r"bad.jsonl:3: split 'train': label 'NaN' is not a finite number"),
    ("glue/stsb", "high", r"bad.jsonl:3: split 'train': label 'high' is not a finite number"),
])
def test_labels_outside_the_label_set_fail_before_training(tmp_path, wordpiece, task, label, message):
    fields = ["sentence1", "sentence2"] if task == "glue/stsb" else ["sentence"]
    row = lambda lab: {**{f: "a film ." for f in fields}, "label": lab}
    bad = jsonl(tmp_path / "bad.jsonl", [row(1), row(0), row(label)])
    good = jsonl(tmp_path / "good.jsonl", [row(1), row(0)])
    with pytest.raises(DataError, match=message):
        load_glue(glue_task(f"task={task}", f"task.data_files={{train: {bad}, validation: {good}}}"), wordpiece, 0)


def test_hub_rows_are_checked_too_and_minus_one_means_no_label():
    task = glue_task("task=glue/sst2")
    ds = Dataset.from_dict({"sentence": ["a", "b", "c"], "label": [1, -1, 0]})
    clean, dropped = labelled_split(task, "test", ds, "hub nyu-mll/glue/sst2")
    assert dropped == 1 and clean["label"] == [1, 0]
    with pytest.raises(DataError, match=r"hub nyu-mll/glue/sst2 split 'validation' row 2: split 'validation': label 2 is outside"):
        labelled_split(task, "validation", Dataset.from_dict({"sentence": ["a", "b"], "label": [1, 2]}), "hub nyu-mll/glue/sst2")
    with pytest.raises(DataError, match="none of its 2 rows has a label"):
        labelled_split(task, "test", Dataset.from_dict({"sentence": ["a", "b"], "label": [-1, -1]}), "hub nyu-mll/glue/sst2")


# --- rows without a label: counted, recorded, warned about, or refused -----------------------------------------

def test_missing_labels_are_dropped_counted_and_warned(tmp_path, wordpiece, caplog):
    labels = [str(i % 2) if i % 2 else "" for i in range(300)]  # 150 of 300 rows without a label
    write(tmp_path / "SST-2/train.tsv", sst2_tsv(labels))
    write(tmp_path / "SST-2/dev.tsv", sst2_tsv(["0", "1"]))
    with caplog.at_level(logging.WARNING):
        data = load_glue(glue_task("task=glue/sst2", f"task.data_dir={tmp_path}"), wordpiece, 0)
    assert data.info["dropped_rows"] == {"train": {"no label": 150}, "validation": {"no label": 0}}
    assert data.info["num_train"] == 150 and len(data.train) == 150
    assert "dropped 150 of 300 rows of split 'train' that have no label" in caplog.text

    nulls = jsonl(tmp_path / "n.jsonl", [{"sentence": "a", "label": 1}, {"sentence": "b", "label": None}, {"sentence": "c"}])
    data = load_glue(glue_task("task=glue/sst2", f"task.data_files={{train: {nulls}, validation: {nulls}}}"), wordpiece, 0)
    assert data.info["dropped_rows"]["train"] == {"no label": 2} and len(data.train) == 1


def test_missing_labels_error_refuses_them_with_file_and_line(tmp_path, wordpiece):
    write(tmp_path / "SST-2/train.tsv", sst2_tsv(["1", "0", " ", "1"]))
    write(tmp_path / "SST-2/dev.tsv", sst2_tsv(["0"]))
    with pytest.raises(DataError, match=r"SST-2/train.tsv:4: split 'train': the row has no label and "
                                        r"task.missing_labels=error refuses such rows"):
        load_glue(glue_task("task=glue/sst2", f"task.data_dir={tmp_path}", "task.missing_labels=error"), wordpiece, 0)
    with pytest.raises(ConfigError, match=r"task.missing_labels='keep' is not one of \['drop', 'error'\]"):
        check(compose_cfg(["model=tiny-bert", "task=glue/sst2", "task.missing_labels=keep"]))


def test_dropped_rows_reach_results_json(tmp_path):
    write(tmp_path / "glue/SST-2/train.tsv", sst2_tsv(["1", "", "0", "1", ""] * 4))
    write(tmp_path / "glue/SST-2/dev.tsv", sst2_tsv(["0", "1", ""]))
    cfg = compose_cfg([*TINY, "method=full", "task=glue/sst2", f"task.data_dir={tmp_path / 'glue'}", "train.max_steps=1",
                       "export=false"])
    run(cfg, tmp_path / "run")
    data = json.loads((tmp_path / "run" / "results.json").read_text())["data"]
    assert data["dropped_rows"] == {"train": {"no label": 8}, "validation": {"no label": 1}}
    assert data["num_train"] == 12 and data["missing_labels"] == "drop"


# --- model.path that is not a model ----------------------------------------------------------------------------

def test_model_path_that_is_not_a_model(tmp_path):
    cases = {
        "empty": ({}, "has no config.json"),
        "adapter": ({"adapter_config.json": "{}"}, r"has no config.json \(it holds a PEFT adapter"),
        "broken": ({"config.json": '{"model_type": "bert",'}, r"config.json is not valid JSON \(line 1"),
        "other": ({"config.json": '{"lr": 0.1}'}, r"config.json has no 'model_type'"),
        "unknown": ({"config.json": '{"model_type": "no-such-model"}', "model.safetensors": "x", "vocab.txt": "x"},
                    r"model_type 'no-such-model', which transformers .* does not know"),
        "bare": ({"config.json": '{"model_type": "bert"}'}, r"has no weights \(none of model.safetensors.*and no tokenizer files"),
    }
    for name, (files, message) in cases.items():
        (tmp_path / name).mkdir()
        for file, text in files.items():
            write(tmp_path / name / file, text)
        with pytest.raises(ConfigError, match=rf"model.path=.*{name}.*{message}"):
            check_model_dir(str(tmp_path / name))
    with pytest.raises(ConfigError, match=r"model.path=.*bare has no weights"):
        check(compose_cfg(["model=bert-base-uncased", f"model.path={tmp_path / 'bare'}"]))


def test_model_path_with_damaged_weights_names_model_path(tmp_path):
    model, tok, _ = load_model(compose_cfg(["model=tiny-bert"]))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a copy that stopped half-way
    with pytest.raises(ConfigError, match=r"model.path=.*: transformers cannot load it \(SafetensorError"):
        load_model(compose_cfg(["model=bert-base-uncased", f"model.path={tmp_path}"]))


# --- the CLI: one line, exit code 2 ----------------------------------------------------------------------------

def cli(*args, timeout=180):
    t0 = time.time()
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return proc, time.time() - t0


def test_cli_model_path_not_a_model_exits_2_fast(tmp_path):
    (tmp_path / "m").mkdir()
    proc, seconds = cli("model=bert-base-uncased", f"model.path={tmp_path / 'm'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: invalid configuration" in proc.stderr and "Traceback" not in proc.stderr
    assert f"model.path={tmp_path / 'm'} has no config.json" in proc.stderr
    assert seconds < 30  # checked before any model loads (about 2 s when the machine is idle)


def test_cli_corrupt_tsv_exits_2_with_one_line(tmp_path):
    write(tmp_path / "glue/SST-2/train.tsv", sst2_tsv(["1", "neg"]))
    write(tmp_path / "glue/SST-2/dev.tsv", sst2_tsv(["1"]))
    proc, _ = cli("model=tiny-bert", "task=glue/sst2", f"task.data_dir={tmp_path / 'glue'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"error: {tmp_path / 'glue/SST-2/train.tsv'}:3: label 'neg' is not one of the task's labels" in proc.stderr
