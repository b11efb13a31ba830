"""Corrupt local data fails before torch loads: the CLI's data preflight reads the task's files with the
loaders' own stdlib readers and checks, exits 2 with the loader's file:line message, and keeps what it read
so the loader does not parse the files a second time."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import CONF, compose_cfg
from data_files import jsonl, sst2_tsv, write

from sparsetune.errors import ConfigError
from sparsetune.tasks import data_to_text_files, glue_files, local_files, read_cache
from sparsetune.tasks.data_to_text import load_e2e
from sparsetune.tasks.errors import DataError
from sparsetune.tasks.glue import load_glue
from sparsetune.tasks.instruction import load_alpaca
from sparsetune.tasks.preflight import check_data
from sparsetune.tiny_tokenizer import bytelevel_tokenizer, wordpiece_tokenizer
from sparsetune.validate import preflight

ROOT = Path(CONF).parent
HEAVY = ("torch", "transformers", "datasets")


def bad_data(tmp: Path) -> list[tuple[list[str], str]]:
    """(overrides, the loader's message) for one corrupt file of each task family the preflight reads."""
    good_sst = jsonl(tmp / "good_sst.jsonl", [{"sentence": "a", "label": 1}])
    alpaca = write(tmp / "alpaca.json", '[\n  {"instruction": "i", "output": "o"},\n  {"instruction": "i" "output": "o"}\n]')
    gsm = jsonl(tmp / "gsm.jsonl", [{"question": "q", "answer": "so #### 4"}, {"question": "q", "answer": "no number"}])
    write(tmp / "e2e/trainset.csv", 'mr,ref\n"name[A]",A.\n"name[B]",B.,extra\n')
    write(tmp / "e2e/testset_w_refs.csv", 'mr,ref\n"name[A]",A.\n')
    write(tmp / "glue/STS-B/train.tsv", "index\tsentence1\tsentence2\tscore\n0\tA.\tB.\t5.0\n1\tC.\tD.\n")
    write(tmp / "glue/STS-B/dev.tsv", "index\tsentence1\tsentence2\tscore\n0\tA.\tB.\t5.0\n")
    return [
        (["task=glue/sst2", f"task.data_files={{train: {jsonl(tmp / 'sst.jsonl', [{'sentence': 'a', 'label': 7}])}, "
                            f"validation: {good_sst}}}"],
         r"sst.jsonl:1: split 'train': label 7 is outside the task's label set; expected a class id in 0..1"),
        (["task=glue/stsb", f"task.data_dir={tmp / 'glue'}"],
         r"STS-B/train.tsv:3: 3 tab-separated field\(s\); expected at least 4"),
        (["task=alpaca", f"+task.data_files.train={alpaca}"], r"alpaca.json:3: not valid JSON \(Expecting ',' delimiter"),
        (["task=gsm8k", f"+task.data_files.train={gsm}", f"+task.data_files.test={gsm}"],
         r"gsm.jsonl:2: a GSM8K answer must end with '#### <number>'"),
        (["task=e2e", f"task.data_dir={tmp / 'e2e'}"], r"trainset.csv:3: 3 field\(s\) where the header has 2 \(mr, ref\)"),
    ]


def test_cli_exits_2_with_file_and_line_before_torch_is_imported(tmp_path):
    write(tmp_path / "glue/SST-2/train.tsv", sst2_tsv(["1", "neg", "0"]))
    write(tmp_path / "glue/SST-2/dev.tsv", sst2_tsv(["0"]))
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-X", "importtime", "train.py", "task=glue/sst2", f"task.data_dir={tmp_path / 'glue'}",
                           "model=tiny-bert", f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    messages = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert messages == [f"error: {tmp_path}/glue/SST-2/train.tsv:3: label 'neg' is not one of the task's labels; "
                        "expected a class id in 0..1 (task.num_labels=2)"]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "sparsetune.tasks.glue_files" in imported and not imported & set(HEAVY)
    record = json.loads((run_dir / "results.json").read_text())
    assert record["status"] == "failed" and "SST-2/train.tsv:3" in record["error"]


def test_every_task_family_fails_in_the_preflight_without_torch(tmp_path):
    cases = bad_data(tmp_path)
    code = textwrap.dedent(f"""
        import json, re, sys
        from hydra import compose, initialize_config_dir
        import sparsetune.schema
        from sparsetune.tasks.errors import DataError
        from sparsetune.validate import preflight
        sparsetune.schema.register()
        out = []
        for overrides, pattern in {cases!r}:
            with initialize_config_dir(config_dir={CONF!r}, version_base="1.3"):
                cfg = compose(config_name="train", overrides=overrides)
            try:
                preflight(cfg)
                out.append("no error")
            except DataError as e:
                out.append("ok" if re.search(pattern, str(e)) else str(e))
        print(json.dumps([out, [m for m in {HEAVY!r} if m in sys.modules]]))
        """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results, heavy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results == ["ok"] * len(cases) and heavy == []


def test_preflight_and_loader_raise_the_same_message(tmp_path):
    for overrides, _ in bad_data(tmp_path)[:1]:
        cfg = compose_cfg(["model=tiny-bert", *overrides])
        with pytest.raises(DataError) as preflight_error:
            preflight(cfg)
        with pytest.raises(DataError) as loader_error:
            load_glue(cfg.task, wordpiece_tokenizer(), 0)
        assert str(preflight_error.value) == str(loader_error.value)


def test_the_loader_takes_the_rows_the_preflight_read(tmp_path, monkeypatch):
    write(tmp_path / "SST-2/train.tsv", sst2_tsv(["1", "0", ""] * 10))
    write(tmp_path / "SST-2/dev.tsv", sst2_tsv(["0", "1"]))
    reads = []
    parse = glue_files._read_tsv
    monkeypatch.setattr(glue_files, "_read_tsv", lambda path, *a: reads.append(path.name) or parse(path, *a))
    cfg = compose_cfg(["model=tiny-bert", "task=glue/sst2", f"task.data_dir={tmp_path}"])
    check_data(cfg)
    assert reads == ["train.tsv", "dev.tsv"] and read_cache.kept_count() == 2
    data = load_glue(cfg.task, wordpiece_tokenizer(), 0)
    assert reads == ["train.tsv", "dev.tsv"]  # not parsed again
    assert read_cache.kept_count() == 0  # taken, not held for the rest of the run
    assert data.info["num_train"] == 20 and data.info["dropped_rows"]["train"] == {"no label": 10}
    load_glue(cfg.task, wordpiece_tokenizer(), 0)  # without a preflight the loader reads for itself
    assert reads == ["train.tsv", "dev.tsv"] * 2


def test_the_loader_takes_the_pairs_the_preflight_made(tmp_path, monkeypatch):
    write(tmp_path / "trainset.csv", 'mr,ref\n"name[A], food[Thai]",A serves Thai.\n"name[B]",B.\n')
    write(tmp_path / "testset_w_refs.csv", 'mr,ref\n"name[C]",C.\n')
    made = []
    convert = data_to_text_files.PAIRS["e2e"]
    monkeypatch.setitem(data_to_text_files.PAIRS, "e2e", lambda rows, source: made.append(len(rows)) or convert(rows, source))
    cfg = compose_cfg(["task=e2e", f"task.data_dir={tmp_path}", "task.options.num_beams=1"])
    check_data(cfg)
    data = load_e2e(cfg.task, bytelevel_tokenizer(), 0)
    assert made == [2, 1] and read_cache.kept_count() == 0  # train and test converted once, by the preflight
    assert data.info["num_train"] == 2 and data.info["num_sources"] == 1


def test_a_file_changed_after_the_preflight_is_read_again(tmp_path):
    rows = [{"instruction": "i", "output": f"o{i}"} for i in range(6)]
    train = jsonl(tmp_path / "alpaca.jsonl", rows)
    cfg = compose_cfg(["task=alpaca", f"+task.data_files.train={train}", "task.options.val_set_size=2"])
    check_data(cfg)
    jsonl(train, rows + [{"instruction": "i"}])  # now corrupt: longer, so its size differs
    with pytest.raises(DataError, match=r"alpaca.jsonl:7: no column 'output'"):
        load_alpaca(cfg.task, bytelevel_tokenizer(), 0)
    assert read_cache.kept_count() == 0  # the stale rows are dropped too


def test_a_failed_preflight_keeps_nothing_and_a_missing_file_is_a_config_error(tmp_path):
    write(tmp_path / "SST-2/train.tsv", sst2_tsv(["1"]))
    with pytest.raises(ConfigError, match=r"task.data_dir: expected .*SST-2/dev.tsv"):
        check_data(compose_cfg(["model=tiny-bert", "task=glue/sst2", f"task.data_dir={tmp_path}"]))
    assert read_cache.kept_count() == 0


def test_hub_data_synthetic_tasks_and_dry_runs_are_left_to_the_loader(tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(local_files, "_read_records", lambda path: opened.append(path))
    for overrides in (["task=glue/sst2"], ["task=alpaca"], ["task=synthetic/sentiment"], ["task=gsm8k"]):
        check_data(compose_cfg(["model=tiny-bert", *overrides]))  # offline, nothing local: no error, nothing read
    corrupt = write(tmp_path / "alpaca.json", "[{")
    check_data(compose_cfg(["task=alpaca", f"+task.data_files.train={corrupt}", "dry_run=true"]))
    assert opened == [] and read_cache.kept_count() == 0
