"""task=alpaca: the Stanford Alpaca template, loss masking, the collator, the carved eval split, a tiny run."""
import json

import pytest
from conftest import compose_cfg
from datasets import Dataset

from sparsetune.run import run
from sparsetune.tasks.causal_lm import IGNORE_INDEX, carve_validation, collator_for, tokenize_prompt_target, wants_bos
from sparsetune.tasks.instruction import alpaca_prompt, load_alpaca
from sparsetune.tiny_tokenizer import bytelevel_tokenizer

ROWS = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well. Sleep. Move."},
    {"instruction": "Identify the odd one out.", "input": "Twitter, Instagram, Telegram", "output": "Telegram"},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    {"instruction": "Name a colour.", "input": "", "output": "Blue"},
] * 3


@pytest.fixture(scope="module")
def tok():
    return bytelevel_tokenizer()


def test_prompt_is_the_exact_stanford_template():
    assert alpaca_prompt("Give three tips for staying healthy.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nGive three tips for staying healthy.\n\n### Response:\n")
    assert alpaca_prompt("Identify the odd one out.", "Twitter, Instagram, Telegram") == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nIdentify the odd one out.\n\n### Input:\nTwitter, Instagram, Telegram\n\n### Response:\n")
    assert alpaca_prompt("x", None) == alpaca_prompt("x", "")  # a missing input = the no-input template


def test_labels_mask_the_prompt_and_end_with_eos(tok):
    prompt, target = alpaca_prompt("Name a colour."), "Blue"
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    t_ids = tok(target, add_special_tokens=False)["input_ids"]
    ds, dropped = tokenize_prompt_target(Dataset.from_list([{"prompt": prompt, "target": target}]), tok, 512,
                                         train_on_inputs=False, bos=True, eos=True)
    ex = ds[0]
    assert dropped == 0
    assert ex["input_ids"] == [tok.bos_token_id, *p_ids, *t_ids, tok.eos_token_id]
    assert ex["labels"] == [IGNORE_INDEX] * (1 + len(p_ids)) + t_ids + [tok.eos_token_id]
    assert ex["attention_mask"] == [1] * len(ex["input_ids"])
    full, _ = tokenize_prompt_target(Dataset.from_list([{"prompt": prompt, "target": target}]), tok, 512,
                                     train_on_inputs=True, bos=False, eos=True)
    assert full[0]["labels"] == full[0]["input_ids"] == [*p_ids, *t_ids, tok.eos_token_id]


def test_truncation_keeps_the_prompt_and_drops_examples_without_target(tok):
    prompt = alpaca_prompt("Name a colour.")
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    rows = [{"prompt": prompt, "target": "Blue is a colour"}, {"prompt": prompt * 3, "target": "Blue"}]
    ds, dropped = tokenize_prompt_target(Dataset.from_list(rows), tok, n_prompt + 2, train_on_inputs=False, bos=False, eos=True)
    assert dropped == 1 and len(ds) == 1
    with pytest.raises(ValueError, match="task.max_length=5; raise it"):
        tokenize_prompt_target(Dataset.from_list(rows), tok, 5, train_on_inputs=False, bos=False, eos=True)
    assert len(ds[0]["input_ids"]) == n_prompt + 2
    assert ds[0]["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt and IGNORE_INDEX not in ds[0]["labels"][n_prompt:]


def test_collator_pads_right_with_pad_zero_mask_and_ignored_labels(tok):
    assert tok.pad_token_id == 0
    batch = collator_for(tok)([
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]},
        {"input_ids": [8], "attention_mask": [1], "labels": [8]},
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert "labels" not in collator_for(tok)([{"input_ids": [1]}])  # the export probe drops labels


def test_carved_validation_is_deterministic_and_disjoint():
    ds = Dataset.from_list([{"i": i} for i in range(50)])
    tr1, va1 = carve_validation(ds, 10, seed=42)
    tr2, va2 = carve_validation(ds, 10, seed=42)
    assert list(va1["i"]) == list(va2["i"]) and len(va1) == 10 and len(tr1) == 40
    assert sorted(list(tr1["i"]) + list(va1["i"])) == list(range(50))
    assert len(carve_validation(ds, 0.2, seed=0)[1]) == 10
    for bad in (0, 50, 2.5, True):
        with pytest.raises(ValueError, match="val_set_size"):
            carve_validation(ds, bad, seed=0)


def test_add_bos_auto_follows_the_tokenizer(tok):
    assert wants_bos(tok, "auto") is False  # the byte-level test tokenizer adds no BOS by itself
    assert wants_bos(tok, True) is True
    with pytest.raises(ValueError, match="add_bos"):
        wants_bos(tok, "yes")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_loader_reads_local_jsonl_and_rejects_unknown_options(tok, tmp_path):
    train = write_jsonl(tmp_path / "alpaca.jsonl", ROWS)
    cfg = compose_cfg(["task=alpaca", f"+task.data_files.train={train}", "task.options.val_set_size=4"])
    data = load_alpaca(cfg.task, tok, seed=0)
    assert data.info["num_train"] == 8 and data.info["num_eval"] == {"validation": 4}
    assert data.info["train_on_inputs"] is False and data.info["eval_carved_from_train"] == {"size": 4, "seed": 42}
    assert set(data.train.column_names) == {"input_ids", "attention_mask", "labels"}
    bad = compose_cfg(["task=alpaca", f"+task.data_files.train={train}", "+task.options.val_size=4"])
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['val_size'\].*allowed"):
        load_alpaca(bad.task, tok, seed=0)


def test_tiny_llama_alpaca_run_records_eval_loss(tmp_path):
    train = write_jsonl(tmp_path / "alpaca.jsonl", ROWS)
    cfg = compose_cfg(["model=tiny-llama", "method=full", "task=alpaca", f"+task.data_files.train={train}",
                       "task.options.val_set_size=4", "task.max_length=224", "train.max_steps=3", "train.batch_size=4",
                       "train.eval_strategy=no", "train.logging_steps=1", "train.lr=1e-3"])
    res = run(cfg, tmp_path / "run")
    rec = json.loads((tmp_path / "run" / "results.json").read_text())
    assert rec["status"] == "completed" and res["timing"]["steps"] == 3
    assert rec["metrics"]["eval"]["loss"] > 0 and rec["metrics"]["train_loss"] > 0
    assert rec["data"]["prompt_template"] == "stanford_alpaca" and rec["data"]["num_eval"] == {"validation": 4}
    assert rec["export"]["reload_max_abs_diff"] < 1e-5


def test_no_local_data_and_no_hub_names_the_local_option(tok):
    from sparsetune.hub import OfflineError

    with pytest.raises(OfflineError, match="task.data_files"):
        load_alpaca(compose_cfg(["task=alpaca"]).task, tok, 0)
