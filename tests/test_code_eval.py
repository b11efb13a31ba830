"""HumanEval / MBPP pass@1 through lm-eval's own tasks on toy local problem sets, with the programs executed
locally (code_execution.CodeEval answers lm-eval's `evaluate.load("code_eval")`), and the pass@k estimator.

The end-to-end tests put a stand-in language model behind lm-eval that answers with a known-correct program for
some problems and a wrong one for the others, so the expected pass@1 is known exactly: every step between the
model's text and the score (lm-eval's prompt, its prediction filter, its metric function, our execution) runs."""
import re

import pytest
import torch
from lm_eval.api.model import LM
from test_harness import eval_cfg
from test_local_tasks import HUMANEVAL, MBPP, write_code_data

from sparsetune.evaluation import harness
from sparsetune.evaluation.code_execution import CodeEval, pass_at_k, run_program
from sparsetune.evaluation.suite import check_eval_config, evaluate_suite


@pytest.fixture
def code_data(tmp_path):
    return write_code_data(tmp_path / "data")


class ScriptedLM(LM):
    """Answers each generation request with a fixed program chosen by which toy problem the prompt ends with."""

    max_length = 2048

    def __init__(self, answers: dict[str, str]):
        super().__init__()
        self.answers, self.contexts = answers, []

    def generate_until(self, requests, disable_tqdm=False):
        out = []
        for request in requests:
            context = request.args[0]
            self.contexts.append(context)
            key = next(k for k in self.answers if context.endswith(k))
            out.append(self.answers[key])
        return out

    def loglikelihood(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError


def run_with(monkeypatch, tmp_path, lm, tasks, data_dir):
    monkeypatch.setattr(harness, "make_lm", lambda *a, **k: lm)
    cfg = eval_cfg(tmp_path, tasks=tasks, data_dir=str(data_dir), allow_code_execution=True)
    return evaluate_suite(torch.nn.Module(), None, cfg)  # the LM stands in for the model


def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)  # c / n
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2) / C(5,2)
    assert pass_at_k(5, 4, 2) == 1.0 and pass_at_k(3, 0, 1) == 0.0
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(2, 3, 1)


def test_programs_pass_fail_and_time_out(monkeypatch):
    assert run_program("assert 1 + 1 == 2") == "passed"
    assert run_program("assert 1 + 1 == 3").startswith("failed: AssertionError")
    assert run_program("def f(:\n  pass").startswith("failed: SyntaxError")
    assert run_program("while True:\n    pass", timeout=0.5) == "timed out"
    tests = ["assert add(2, 3) == 5"]
    monkeypatch.delenv("HF_ALLOW_CODE_EVAL", raising=False)
    with pytest.raises(ValueError, match="HF_ALLOW_CODE_EVAL=1"):
        CodeEval().compute(references=tests, predictions=[["def add(a, b): return a + b"]], k=[1])
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")
    candidates = ["def add(a, b): return a + b", "def add(a, b): return a * b", "def add(a, b):\n    while True: pass"]
    scores, outcomes = CodeEval(timeout=1.0).compute(references=tests * 2, predictions=[candidates, candidates[:1]], k=[1, 2, 5])
    assert outcomes[0][0] == "passed" and outcomes[0][1].startswith("failed") and outcomes[0][2] == "timed out"
    assert scores == {"pass@1": pytest.approx((1 / 3 + 1) / 2)}  # pass@2 / pass@5 need 2 / 5 candidates per problem


def test_humaneval_pass_at_1_through_lm_eval_task(monkeypatch, tmp_path, code_data):
    # problems 0 and 2 answered right, 1 wrong: pass@1 = 2/3
    answers = {p: (wrong if i == 1 else right) for i, (_, p, right, wrong, _, _) in enumerate(HUMANEVAL)}
    lm = ScriptedLM(answers)
    out = run_with(monkeypatch, tmp_path, lm, ["humaneval"], code_data)
    assert out["harness"]["humaneval"]["pass@1/create_test"] == pytest.approx(2 / 3)
    assert lm.contexts == [p for _, p, *_ in HUMANEVAL]  # lm-eval's 0-shot prompt: the function header as given
    settings = out["harness_settings"]
    assert settings["per_task"]["humaneval"]["task_yaml"] == "lm_eval/tasks/humaneval/humaneval.yaml"
    assert settings["per_task"]["humaneval"]["n_samples"]["effective"] == 3
    assert settings["code_execution"]["families"] == ["humaneval"]


def test_mbpp_pass_at_1_through_lm_eval_task_drops_other_splits(monkeypatch, tmp_path, code_data):
    answers = {f"{tests[2]}\n[BEGIN]\n": (right if t == 11 else wrong) for t, _, right, wrong, tests in MBPP}
    lm = ScriptedLM(answers)
    out = run_with(monkeypatch, tmp_path, lm, ["mbpp"], code_data)
    assert out["harness"]["mbpp"]["pass_at_1"] == pytest.approx(1 / 2)
    assert len(lm.contexts) == 2 and all(c.count("[BEGIN]") == 4 for c in lm.contexts)  # lm-eval's 3 shots + the task
    assert re.search(r"Write a function to double a number\. Your code should pass these tests:", lm.contexts[0])
    data = out["harness_settings"]["per_task"]["mbpp"]["data"]
    assert data["rows"]["test"] == 2 and data["dropped"]["test"] == {"task_id outside the test split (11-510)": 1}


def test_code_tasks_need_the_opt_in(tmp_path, code_data):
    with pytest.raises(ValueError, match="eval.allow_code_execution=true"):
        check_eval_config(eval_cfg(tmp_path, tasks=["humaneval", "arc_easy"], data_dir=str(code_data)))
    check_eval_config(eval_cfg(tmp_path, tasks=["humaneval"], data_dir=str(code_data), allow_code_execution=True))
