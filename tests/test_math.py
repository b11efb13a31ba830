"""task=gsm8k / metamathqa: answer extraction, exact match, the cot prompt, the evaluator, a tiny run."""
import json
from decimal import Decimal

import pytest
import torch
from conftest import compose_cfg

from sparsetune import models
from sparsetune.run import run
from sparsetune.tasks.causal_lm import prompt_ids
from sparsetune.tasks.generate import generate
from sparsetune.tasks.math import load_gsm8k, load_metamathqa
from sparsetune.tasks.math_answers import cot_exemplars, cot_prompt, flexible_answer, gold_answer, same_number, strict_answer
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


def test_strict_and_flexible_extraction():
    assert strict_answer("So 21 - 15 = 6. The answer is 42.") == Decimal(42)
    assert strict_answer("The answer is: 18") == Decimal(18)  # MetaMathQA's wording
    assert strict_answer("9 * 2 = 18\n#### 1,234") == Decimal(1234)
    assert strict_answer("I think it is 42") is None
    assert flexible_answer("I think it is 42") == Decimal(42)
    assert flexible_answer("First 3 then $1,234.50 in total.") == Decimal("1234.50")
    assert flexible_answer("no numbers... at all") is None
    assert same_number(flexible_answer("costs 18.00 dollars"), gold_answer("#### 18"))  # numeric, not string, match
    assert not same_number(None, Decimal(1))


def test_cot_prompt_uses_lm_eval_exemplars():
    shots = cot_exemplars(5)
    assert len(shots) == 5 and shots[0]["question"].startswith("There are 15 trees in the grove.")
    assert shots[0]["target"].endswith("The answer is 6.")
    two = [{"question": "A?", "target": "B. The answer is 1."}, {"question": "C?", "target": "D. The answer is 2."}]
    assert cot_prompt("E?", two) == "Q: A?\nA: B. The answer is 1.\n\nQ: C?\nA: D. The answer is 2.\n\nQ: E?\nA:"
    assert cot_prompt("E?", []) == "Q: E?\nA:"
    with pytest.raises(ValueError, match="num_fewshot=9"):
        cot_exemplars(9)


class ScriptedLM(torch.nn.Module):
    """A stand-in model whose generate() appends a fixed continuation chosen by the question in the prompt."""

    def __init__(self, tok, answers: dict):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.tok, self.answers, self.prompts = tok, answers, []

    def generate(self, input_ids, attention_mask, generation_config, **kw):
        rows = []
        for ids, mask in zip(input_ids, attention_mask):
            assert mask[-1] == 1  # left padding: every prompt ends at the last column
            prompt = self.tok.decode(ids[mask.bool()])
            self.prompts.append(prompt)
            answer = next(a for q, a in self.answers.items() if q in prompt)
            rows.append(ids.tolist() + self.tok(answer, add_special_tokens=False)["input_ids"])
        width = max(map(len, rows))
        return torch.tensor([r + [generation_config.pad_token_id] * (width - len(r)) for r in rows])


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_evaluator_scores_strict_and_flexible_match(tmp_path):
    tok = bytelevel_tokenizer()
    test = write_jsonl(tmp_path / "test.jsonl", TEST)
    cfg = compose_cfg(["task=gsm8k", f"+task.data_files.train={test}", f"+task.data_files.test={test}", "task.max_length=256",
                       "task.options.eval_prompt=cot", "task.options.num_fewshot=2", "task.options.eval_batch_size=2"])
    data = load_gsm8k(cfg.task, tok, seed=0)
    model = ScriptedLM(tok, {
        "Janet": " 9 * 2 = 18. The answer is 18.\n\nQ: a made-up next question with 99",  # cut at "Q:" -> both match
        "apples": " There are 1,234 apples.",  # no "The answer is": flexible only
        "2 + 3": " The answer is 7.",  # wrong
    })
    res = data.extras["evaluators"]["gsm8k"](model, tok, cfg)
    assert res["strict_match"] == pytest.approx(1 / 3) and res["flexible_extract"] == pytest.approx(2 / 3)
    assert res["num_examples"] == 3 and res["num_fewshot"] == 2 and res["decoding"]["stop"][0] == "Q:"
    assert res["samples"][0]["output"] == "9 * 2 = 18. The answer is 18." and res["samples"][1]["gold"] == "1234"
    assert model.prompts[0].startswith("Q: There are 15 trees") and model.prompts[0].endswith(f"Q: {TEST[0]['question']}\nA:")
    assert model.training  # the evaluator restores the training mode


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
    with pytest.raises(ValueError, match="eval_prompt='cot8'; allowed: train, cot"):
        load_gsm8k(bad.task, tok, seed=0)


def test_batched_generation_equals_one_by_one():
    model, tok, _ = models.load(compose_cfg(["model=tiny-llama", "task=gsm8k"]))
    prompts = [prompt_ids(tok, t, False) for t in ("What is 2 + 3?", "A much longer question about eggs and money?", "Hi")]
    gen = {"max_new_tokens": 6, "num_beams": 1}
    batched = generate(model, tok, prompts, {**gen, "eval_batch_size": 3})
    single = generate(model, tok, prompts, {**gen, "eval_batch_size": 1})
    assert batched == single and len(batched) == 3


def test_tiny_llama_gsm8k_run_records_exact_match(tmp_path):
    f = write_jsonl(tmp_path / "t.jsonl", TEST)
    cfg = compose_cfg(["model=tiny-llama", "method=full", "task=gsm8k", f"+task.data_files.train={f}", f"+task.data_files.test={f}",
                       "task.max_length=160", "task.options.eval_examples=2", "task.options.max_new_tokens=4",
                       "train.max_steps=2", "train.batch_size=3", "train.eval_strategy=no", "export=false"])
    res = run(cfg, tmp_path / "run")
    g = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]["gsm8k"]
    assert res["status"] == "completed" and g["num_examples"] == 2 and 0.0 <= g["flexible_extract"] <= 1.0
    assert g["decoding"]["max_new_tokens"] == 4 and g["prompt"] == "train (alpaca, zero-shot)"


def test_no_local_data_and_no_hub_names_the_local_option(tmp_path):
    from sparsetune.hub import OfflineError

    tok = bytelevel_tokenizer()
    with pytest.raises(OfflineError, match="task.data_files.train"):
        load_gsm8k(compose_cfg(["task=gsm8k"]).task, tok, 0)
    train = write_jsonl(tmp_path / "mm.jsonl", [{"query": "q", "response": "r"}])
    with pytest.raises(OfflineError, match="task.data_files.test"):  # the GSM8K test split for metamathqa
        load_metamathqa(compose_cfg(["task=metamathqa", f"+task.data_files.train={train}"]).task, tok, 0)
