"""pass@k by running model-written programs against their tests: the backend of lm-eval's humaneval / mbpp.

lm-eval 0.4.13's humaneval and mbpp metrics call `evaluate.load("code_eval")` when their utils module is
imported, and that fetches a metric script from the Hugging Face Hub (unreachable offline, and a network
round trip otherwise). `CodeEval` answers the same `compute(references, predictions, k)` call: each candidate
program followed by its test code runs in a fresh, isolated Python subprocess (`python -I`, own temporary
working directory, no stdin) with a time limit; it passes when the process exits 0. pass@k is the unbiased
estimator of Chen et al. 2021 (Codex, eq. 1), as code_eval computes it.

Running model-written code is unsafe: nothing happens unless the caller opted in (eval.allow_code_execution
in sparsetune; lm-eval's own switch is HF_ALLOW_CODE_EVAL=1 with --confirm_run_unsafe_code).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from math import comb

ALLOW_ENV = "HF_ALLOW_CODE_EVAL"  # the variable code_eval and lm-eval check
TIMEOUT_S = 3.0  # code_eval's default per program
PASSED = "passed"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) passes: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or k < 1:
        raise ValueError(f"pass@k needs 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def run_program(program: str, timeout: float = TIMEOUT_S) -> str:
    """'passed', 'timed out', or 'failed: <last line of stderr>' for one program run in a fresh interpreter."""
    with tempfile.TemporaryDirectory(prefix="sparsetune-code-") as tmp:
        path = os.path.join(tmp, "program.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(program)
        try:
            done = subprocess.run([sys.executable, "-I", path], cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=timeout, text=True, errors="replace")
        except subprocess.TimeoutExpired:
            return "timed out"
    if done.returncode == 0:
        return PASSED
    lines = done.stderr.strip().splitlines()
    return f"failed: {lines[-1] if lines else f'exit code {done.returncode}'}"


def code_execution_allowed() -> bool:
    return os.environ.get(ALLOW_ENV) == "1"


class CodeEval:
    """The `compute` interface of evaluate's code_eval metric, run locally."""

    def __init__(self, timeout: float = TIMEOUT_S, num_workers: int | None = None, allowed: bool | None = None):
        """allowed: the caller's opt-in (sparsetune's eval.allow_code_execution); None: HF_ALLOW_CODE_EVAL=1 as
        code_eval requires, read when `compute` runs."""
        self.timeout, self.allowed = timeout, allowed
        self.num_workers = num_workers or max(1, min(4, os.cpu_count() or 1))

    def compute(self, references: list[str], predictions: list[list[str]], k=(1, 10, 100), num_workers: int | None = None,
                timeout: float | None = None):
        """(pass@k for each k that every problem has enough candidates for, outcomes per problem).
        references[i]: test code of problem i; predictions[i]: its candidate programs."""
        if not (code_execution_allowed() if self.allowed is None else self.allowed):
            raise ValueError(f"pass@k runs model-written code; it is off unless {ALLOW_ENV}=1 (in sparsetune: "
                             "eval.allow_code_execution=true)")
        if len(references) != len(predictions):
            raise ValueError(f"{len(references)} test programs for {len(predictions)} sets of candidates")
        ks = [k] if isinstance(k, int) else list(k)
        jobs = [(i, candidate + "\n" + test) for i, (test, candidates) in enumerate(zip(references, predictions))
                for candidate in candidates]
        with ThreadPoolExecutor(num_workers or self.num_workers) as pool:  # each thread waits on its own subprocess
            outcomes = list(pool.map(lambda job: run_program(job[1], timeout or self.timeout), jobs))
        per_problem: list[list[str]] = [[] for _ in references]
        for (i, _), outcome in zip(jobs, outcomes):
            per_problem[i].append(outcome)
        scores = {}
        for kk in ks:
            if per_problem and all(len(o) >= kk for o in per_problem):
                scores[f"pass@{kk}"] = sum(pass_at_k(len(o), o.count(PASSED), kk) for o in per_problem) / len(per_problem)
        return scores, per_problem
