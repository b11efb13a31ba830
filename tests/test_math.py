"""task=gsm8k / metamathqa: gold answers, the training template, and the reported numbers: lm-eval's own
gsm8k / gsm8k_cot (its prompt, exemplars and strict / flexible filters) on the task's GSM8K files."""
import json
from decimal import Decimal

import pytest
from conftest import compose_cfg
from lm_eval.models.huggingface import HFLM

from sparsetune import models
from sparsetune.run import run
from sparsetune.tasks.causal_lm import prompt_ids
from sparsetune.tasks.generate import generate
from sparsetune.tasks.math import load_gsm8k, load_metamathqa
from sparsetune.tasks.math_answers import gold_answer
from sparsetune.tiny_tokenizer import bytelevel_tokenizer

TEST = [
    {"question": "Janet sells 9 eggs for $2 each. How much does she make?", "answer": "9 * 2 = <<9*2=18>>18\n#### 18"},
    {"question": "How many apples are in 1234 boxes of one apple?", "answer": "1234 * 1 = 1234\n#### 1,234"},
    {"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"},
]


def test_gold_answer_is_the_number_after_the_last_hashes():
    assert gold_answer("She pays 1,000 + 234 = <<1000+234=1234>>1,234\n#### 1,234") == Decimal(1234)
    assert gold_answer("#### -3.5") == Decimal("-3.5")
    with pytest.raises(ValueError, match="#### <number>"):
        gold_answer("The answer is 4")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def scripted_generations(monkeypatch, answers: dict) -> list:
    """HFLM.generate_until answers each request with a fixed text chosen by the question in its prompt; returns
    the (prompt, generation settings) pairs lm-eval asked for."""
    asked = []

    def generate_until(self, requests, disable_tqdm=False):
        asked.extend(r.args for r in requests)
        return [next(a for q, a in answers.items() if q in r.args[0].rsplit("Q:", 1)[-1]) for r in requests]

    monkeypatch.setattr(HFLM, "generate_until", generate_until)
    return asked


def test_evaluator_reports_lm_eval_gsm8k_cot_strict_and_flexible(tmp_path, monkeypatch):
    tok = bytelevel_tokenizer()
    test = write_jsonl(tmp_path / "test.jsonl", TEST)
    cfg = compose_cfg(["model=tiny-llama", "task=gsm8k", f"+task.data_files.train={test}", f"+task.data_files.test={test}",
                       "task.max_length=256", "task.options.eval_prompt=cot", "task.options.num_fewshot=2",
                       "task.options.eval_batch_size=2", f"paths.cache_dir={tmp_path / 'cache'}"])
    data = load_gsm8k(cfg.task, tok, seed=0)
    model, _, _ = models.load(cfg)
    model.train()
    asked = scripted_generations(monkeypatch, {
        "Janet": " 9 * 2 = 18. The answer is 18.",  # both filters find 18
        "apples": " There are 1,234 apples.",  # no "The answer is N.": flexible only
        "2 + 3": " The answer is 7.",  # wrong
    })
    res = data.extras["evaluators"]["gsm8k"](model, tok, cfg)
    assert res["strict_match"] == pytest.approx(1 / 3) and res["flexible_extract"] == pytest.approx(2 / 3)
    assert res["lm_eval_task"] == "gsm8k_cot" and res["num_examples"] == 3 and res["num_fewshot"] == 2
    assert res["lm_eval"]["per_task"]["gsm8k_cot"]["task_yaml"] == "lm_eval/tasks/gsm8k/gsm8k-cot.yaml"
    prompt, gen = asked[0]
    assert prompt.count("Q: ") == 3 and prompt.endswith(f"Q: {TEST[0]['question']}\nA:")  # lm-eval's first two exemplars
    assert "Q:" in gen["until"] and gen["do_sample"] is False
    assert model.training  # the evaluator restores the training mode


def test_qa_prompt_is_lm_eval_gsm8k_with_examples_from_the_train_file(tmp_path, monkeypatch):
    tok = bytelevel_tokenizer()
    test, train = write_jsonl(tmp_path / "test.jsonl", TEST[:2]), write_jsonl(tmp_path / "train.jsonl", TEST[2:])
    cfg = compose_cfg(["model=tiny-llama", "task=gsm8k", f"+task.data_files.train={train}", f"+task.data_files.test={test}",
                       "task.max_length=256", "task.options.num_fewshot=1", "task.options.max_new_tokens=7",
                       f"paths.cache_dir={tmp_path / 'cache'}"])
    data = load_gsm8k(cfg.task, tok, seed=0)
    model, _, _ = models.load(cfg)
    asked = scripted_generations(monkeypatch, {"Janet": " She makes 18.\n#### 18", "apples": " 1234 apples"})
    res = data.extras["evaluators"]["gsm8k"](model, tok, cfg)
    assert res["lm_eval_task"] == "gsm8k" and res["strict_match"] == 0.5 and res["flexible_extract"] == 1.0
    prompt, gen = asked[0]
    assert TEST[2]["question"] in prompt and TEST[2]["answer"] in prompt  # the one example: the train file's row
    assert gen["max_gen_toks"] == 7 and res["lm_eval"]["max_gen_toks"] == 7
    mm_rows = [{"query": r["question"], "response": "The answer is: 1"} for r in TEST]
    mm = compose_cfg(["task=metamathqa", f"+task.data_files.train={write_jsonl(tmp_path / 'mm.jsonl', mm_rows)}",
                      f"+task.data_files.test={test}", "task.options.eval_prompt=qa"])
    with pytest.raises(ValueError, match="no local GSM8K train file"):  # MetaMathQA's train file is not GSM8K's
        load_metamathqa(mm.task, tok, seed=0)


def test_train_examples_use_the_alpaca_template_with_loss_on_the_answer(tmp_path):
    tok = bytelevel_tokenizer()
    f = write_jsonl(tmp_path / "t.jsonl", TEST)
    cfg = compose_cfg(["task=gsm8k", f"+task.data_files.train={f}", f"+task.data_files.test={f}", "task.max_length=256"])
    data = load_gsm8k(cfg.task, tok, seed=0)
    ex = data.eval["test"][0]
    n_prompt = sum(1 for lab in ex["labels"] if lab == -100)
    assert tok.decode(ex["input_ids"][:n_prompt]).endswith(f"### Instruction:\n{TEST[0]['question']}\n\n### Response:\n")
    assert tok.decode(ex["input_ids"][n_prompt:], skip_special_tokens=True) == TEST[0]["answer"]
    assert data.info["train_prompt"] == "alpaca" and data.info["num_train"] == 3
    mm_rows = [{"query": r["question"], "response": "The answer is: 1"} for r in TEST]
    mm = compose_cfg(["task=metamathqa", f"+task.data_files.train={write_jsonl(tmp_path / 'mm.jsonl', mm_rows)}",
                      f"+task.data_files.test={f}", "task.max_length=256", "task.max_train_samples=2"])
    mdata = load_metamathqa(mm.task, tok, seed=0)
    assert mdata.info["num_train"] == 2 and mdata.info["train_subset"] == "first" and "gsm8k" in mdata.extras["evaluators"]
    bad = compose_cfg(["task=gsm8k", f"+task.data_files.train={f}", f"+task.data_files.test={f}", "task.options.eval_prompt=cot8"])
    with pytest.raises(ValueError, match="eval_prompt='cot8'; allowed: qa, cot"):
        load_gsm8k(bad.task, tok, seed=0)


def test_batched_generation_equals_one_by_one():
    model, tok, _ = models.load(compose_cfg(["model=tiny-llama", "task=gsm8k"]))
    prompts = [prompt_ids(tok, t, False) for t in ("What is 2 + 3?", "A much longer question about eggs and money?", "Hi")]
    gen = {"max_new_tokens": 6, "num_beams": 1}
    batched = generate(model, tok, prompts, {**gen, "eval_batch_size": 3})
    single = generate(model, tok, prompts, {**gen, "eval_batch_size": 1})
    assert batched == single and len(batched) == 3


def test_tiny_llama_gsm8k_run_records_lm_eval_exact_match(tmp_path):
    f = write_jsonl(tmp_path / "t.jsonl", TEST)
    cfg = compose_cfg(["model=tiny-llama", "method=full", "task=gsm8k", f"+task.data_files.train={f}", f"+task.data_files.test={f}",
                       "task.max_length=160", "task.options.eval_examples=2", "task.options.max_new_tokens=4",
                       "task.options.num_fewshot=2", "train.max_steps=2", "train.batch_size=3", "train.eval_strategy=no",
                       "export=false", f"paths.cache_dir={tmp_path / 'cache'}"])
    res = run(cfg, tmp_path / "run")
    g = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]["gsm8k"]
    assert res["status"] == "completed" and g["num_examples"] == 2 and 0.0 <= g["flexible_extract"] <= 1.0
    assert g["lm_eval_task"] == "gsm8k" and g["num_fewshot"] == 2 and g["lm_eval"]["lm_eval_version"] == "0.4.13"
    assert g["lm_eval"]["per_task"]["gsm8k"]["data"]["rows"] == {"test": 3, "train": 3}


def test_no_local_data_and_no_hub_names_the_local_option(tmp_path):
    from sparsetune.hub import OfflineError

    tok = bytelevel_tokenizer()
    with pytest.raises(OfflineError, match="task.data_files.train"):
        load_gsm8k(compose_cfg(["task=gsm8k"]).task, tok, 0)
    train = write_jsonl(tmp_path / "mm.jsonl", [{"query": "q", "response": "r"}])
    with pytest.raises(OfflineError, match="task.data_files.test"):  # the GSM8K test split for metamathqa
        load_metamathqa(compose_cfg(["task=metamathqa", f"+task.data_files.train={train}"]).task, tok, 0)
