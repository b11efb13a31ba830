"""The libraries' own helpers for task data: transformers' collator / tokenizer padding give the batches the
hand-written code gave, local files become cached Arrow datasets (datasets.load_dataset, from_generator)
with the same rows as the project's readers, and a second load reuses every processing step."""
import copy
import json

import datasets
import pytest
import torch
from conftest import compose_cfg
from data_files import jsonl, write
from datasets import Dataset, Value

from sparsetune.tasks import arrow_cache
from sparsetune.tasks.arrow_cache import cached_map, file_dataset, rows_dataset, text_features
from sparsetune.tasks.causal_lm import IGNORE_INDEX, collator_for, tokenize_prompt_target
from sparsetune.tasks.generate import generate
from sparsetune.tasks.instruction import alpaca_prompt, load_alpaca
from sparsetune.tasks.local_files import read_records
from sparsetune.tiny_tokenizer import bytelevel_tokenizer

FEATURES = [  # lengths 3, 1, 5, 2: padding on every side of the batch
    {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]},
    {"input_ids": [8], "attention_mask": [1], "labels": [8]},
    {"input_ids": [9, 10, 11, 12, 13], "attention_mask": [1] * 5, "labels": [-100, -100, 11, 12, 13]},
    {"input_ids": [14, 15], "attention_mask": [1, 1], "labels": [14, 15]},
]


def previous_collator(features: list[dict], pad_id: int) -> dict:
    """The hand-written collator this project used before (the behaviour to keep): right padding with the pad
    id, attention 0 and label -100 on padding, int64 tensors, no labels key when the features have none."""
    n = max(len(f["input_ids"]) for f in features)
    pad = lambda seq, value: list(seq) + [value] * (n - len(seq))
    batch = {"input_ids": [pad(f["input_ids"], pad_id) for f in features],
             "attention_mask": [pad(f.get("attention_mask", [1] * len(f["input_ids"])), 0) for f in features]}
    if "labels" in features[0]:
        batch["labels"] = [pad(f["labels"], IGNORE_INDEX) for f in features]
    return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}


def previous_left_padding(prompts: list[list[int]], pad_id: int) -> tuple[list, list]:
    width = max(len(p) for p in prompts)
    return [[pad_id] * (width - len(p)) + p for p in prompts], [[0] * (width - len(p)) + [1] * len(p) for p in prompts]


@pytest.fixture(scope="module")
def tok():
    return bytelevel_tokenizer()


@pytest.fixture
def no_pad(tok):
    t = copy.deepcopy(tok)
    t.pad_token = None
    assert t.pad_token_id is None and t.eos_token_id is not None
    return t


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """datasets' cache in a fresh directory (the user's ~/.cache stays untouched)."""
    root = tmp_path / "hf_datasets"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(root))
    return root


def assert_same_batch(got: dict, want: dict):
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype == torch.long and got[key].tolist() == value.tolist(), key


def test_training_batches_equal_the_previous_collator(tok):
    collate = collator_for(tok)
    for batch in (FEATURES, FEATURES[1:], FEATURES[:1], [FEATURES[2], FEATURES[1]]):
        assert_same_batch(collate([dict(f) for f in batch]), previous_collator(batch, tok.pad_token_id))
    without_labels = [{k: v for k, v in f.items() if k != "labels"} for f in FEATURES]
    assert "labels" not in collate(without_labels)  # the export probe's batches go to the model as they are
    assert_same_batch(collate(without_labels), previous_collator(without_labels, tok.pad_token_id))
    without_mask = [{"input_ids": f["input_ids"]} for f in FEATURES]
    assert_same_batch(collate(without_mask), previous_collator(without_mask, tok.pad_token_id))


def test_no_pad_token_pads_with_eos_and_leaves_the_users_tokenizer_alone(no_pad):
    before = (no_pad.pad_token, no_pad.padding_side, no_pad.special_tokens_map)
    batch = collator_for(no_pad)(FEATURES)
    assert_same_batch(batch, previous_collator(FEATURES, no_pad.eos_token_id))
    assert batch["input_ids"][1].tolist() == [8] + [no_pad.eos_token_id] * 4
    assert (no_pad.pad_token, no_pad.padding_side, no_pad.special_tokens_map) == before  # saved with the export as it was


def test_training_batches_pad_right_whatever_side_the_tokenizer_pads(tok):
    left = copy.deepcopy(tok)
    left.padding_side = "left"
    assert_same_batch(collator_for(left)(FEATURES), previous_collator(FEATURES, tok.pad_token_id))
    assert left.padding_side == "left"


def test_neither_pad_nor_eos_is_a_config_error(no_pad):
    no_pad.eos_token = None
    with pytest.raises(ValueError, match="neither a pad nor an EOS token"):
        collator_for(no_pad)


class RecordingModel(torch.nn.Module):
    """Takes generate()'s inputs and answers with two fixed tokens per row."""

    def __init__(self, answer: list[int]):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.answer, self.calls = answer, []

    def generate(self, input_ids, attention_mask, generation_config, **_):
        self.calls.append((input_ids.tolist(), attention_mask.tolist(), generation_config.pad_token_id))
        return torch.cat([input_ids, torch.tensor([self.answer] * len(input_ids))], dim=1)


@pytest.mark.parametrize("has_pad", [True, False])
def test_generation_batches_are_left_padded_as_before(tok, no_pad, has_pad):
    t = tok if has_pad else no_pad
    pad_id = tok.pad_token_id if has_pad else t.eos_token_id
    prompts = [[5, 6, 7], [8], [9, 10, 11, 12, 13], [14, 15], [16]]
    answer = t("blue", add_special_tokens=False)["input_ids"]
    model = RecordingModel(answer)
    out = generate(model, t, prompts, {"eval_batch_size": 2, "max_new_tokens": 4})
    assert out == [t.decode(answer).strip()] * len(prompts)
    expected = [(*previous_left_padding(prompts[i:i + 2], pad_id), pad_id) for i in range(0, len(prompts), 2)]
    assert model.calls == expected
    assert t.pad_token_id == (tok.pad_token_id if has_pad else None) and t.padding_side == "right"


ROWS = [{"instruction": f"Name colour {i}.", "input": "" if i % 2 else f"hint {i}", "output": f"Colour {i}"} for i in range(12)]


def previous_alpaca_pipeline(rows: list[dict], tok, val: int) -> tuple[list, list]:
    """The loader's steps as they were: a Python list of pairs -> Dataset.from_list -> carve -> tokenize."""
    pairs = Dataset.from_list([{"prompt": alpaca_prompt(r["instruction"], r.get("input")), "target": r["output"]} for r in rows])
    parts = pairs.train_test_split(test_size=val, shuffle=True, seed=42)
    train, _ = tokenize_prompt_target(parts["train"], tok, 256, train_on_inputs=False, bos=False, eos=True)
    evals, _ = tokenize_prompt_target(parts["test"], tok, 256, train_on_inputs=False, bos=False, eos=True)
    return train.to_list(), evals.to_list()


def alpaca(path, tok, *extra):
    cfg = compose_cfg(["task=alpaca", f"+task.data_files.train={path}", "task.options.val_set_size=4", *extra])
    return load_alpaca(cfg.task, tok, seed=0)


def test_a_local_file_is_loaded_by_datasets_with_the_same_token_ids(tok, tmp_path, cache):
    data = alpaca(jsonl(tmp_path / "alpaca.jsonl", ROWS), tok)
    assert (data.train.to_list(), data.eval["validation"].to_list()) == previous_alpaca_pipeline(ROWS, tok, 4)
    assert data.train.cache_files and all(f["filename"].startswith(str(cache / "json")) for f in data.train.cache_files)


def cache_state(root) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*.arrow")}


def test_a_second_load_reuses_every_cached_step(tok, tmp_path, cache):
    path = jsonl(tmp_path / "alpaca.jsonl", ROWS)
    first = alpaca(path, tok)
    written = cache_state(cache)
    names = sorted(path.rsplit("/", 1)[-1] for path in written)
    assert names[-1] == "json-train.arrow" and len(names) >= 7  # the file; format, carve, tokenize, filter of both splits
    second = alpaca(path, tok)
    assert cache_state(cache) == written  # nothing parsed, mapped or written again
    assert second.train._fingerprint == first.train._fingerprint and second.train.to_list() == first.train.to_list()
    assert second.train.cache_files == first.train.cache_files
    jsonl(path, ROWS + [ROWS[0]])  # a changed file is read again
    assert alpaca(path, tok).info["num_train"] == 9 and cache_state(cache) != written


def test_what_datasets_would_read_differently_keeps_the_readers_text(tok, tmp_path, cache, caplog):
    dates = [{"instruction": f"Date {i}?", "output": f"2020-01-0{i + 1}"} for i in range(6)]  # pyarrow: timestamps
    data = alpaca(jsonl(tmp_path / "dates.jsonl", dates), tok, "task.options.train_on_inputs=true")
    assert "datasets reads column 'output' as datetime" in caplog.text
    tokens = data.train.to_list() + data.eval["validation"].to_list()
    texts = sorted(tok.decode(r["input_ids"], skip_special_tokens=True).rsplit("\n", 1)[-1] for r in tokens)
    assert texts == [d["output"] for d in dates]  # the text as written, not "2020-01-01 00:00:00"
    assert data.train.cache_files  # the reader's rows are cached too


def test_csv_text_stays_text(tmp_path, cache):
    path = write(tmp_path / "rows.csv", 'instruction,input,output\n"a, b",,NA\nc,null,007\n')
    ds = file_dataset(read_records(path), text_features(["instruction", "input", "output"]))
    assert ds.to_list() == [{"instruction": "a, b", "input": "", "output": "NA"}, {"instruction": "c", "input": "null", "output": "007"}]
    assert ds.cache_files and str(cache / "csv") in ds.cache_files[0]["filename"]


def test_rows_dataset_is_named_by_its_content(cache):
    features = text_features(["sentence"], label=Value("int64"))
    rows = [{"sentence": "good", "label": 1}, {"sentence": "bad", "label": 0}]
    a, b = rows_dataset(rows, features), rows_dataset([dict(r) for r in rows], features)
    assert a._fingerprint == b._fingerprint and a.cache_files == b.cache_files and a.to_list() == rows
    assert rows_dataset(rows[:1], features)._fingerprint != a._fingerprint
    assert rows_dataset([{"sentence": "good", "label": 1.0}], text_features(["sentence"], label=Value("float64"))
                        )._fingerprint != rows_dataset(rows[:1], features)._fingerprint


def test_a_change_to_the_task_code_is_a_new_cache_entry(cache, monkeypatch):
    ds = rows_dataset([{"text": "a"}, {"text": "b"}], text_features(["text"]))
    upper = lambda b: {"text": [t.upper() for t in b["text"]]}
    first = cached_map(ds, upper, batched=True)
    assert cached_map(ds, upper, batched=True)._fingerprint == first._fingerprint
    monkeypatch.setattr(arrow_cache, "code_version", lambda: "edited")
    assert cached_map(ds, upper, batched=True)._fingerprint != first._fingerprint


def test_a_bad_row_is_still_named_by_file_and_line_before_datasets_reads_it(tok, tmp_path, cache):
    path = write(tmp_path / "alpaca.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS[:3]) + '{"instruction": "x"}\n')
    with pytest.raises(ValueError, match=r"alpaca.jsonl:4: no column 'output'"):
        alpaca(path, tok)
    assert not list(cache.rglob("*.arrow"))
