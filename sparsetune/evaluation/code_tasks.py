"""lm-eval's humaneval / mbpp tasks (and their variants) with pass@k computed locally.

The tasks stay lm-eval's: prompts, stop sequences, greedy decoding, few-shot examples, the filter that joins
prompt and completion, and the metric functions in their utils.py. Only the code_eval metric those utils fetch
from the hub at import (`evaluate.load("code_eval")`) is answered by `code_execution.CodeEval`: the harness
runs inside `code_eval_scope`, where `evaluate.load` answers that one name, so lm-eval's task loader imports the
utils (public path, no private loader) with the local backend.

Opt-in: the programs a model writes run on this machine, so eval.allow_code_execution=true is required (checked
before training; it enables the local backend and passes lm-eval's confirm_run_unsafe_code, without setting
HF_ALLOW_CODE_EVAL for the rest of the process).
"""
from __future__ import annotations

import contextlib

from .code_execution import ALLOW_ENV, CodeEval

FAMILIES = ("humaneval", "mbpp")  # lm-eval task families whose utils.py load code_eval at import


def family_of(task: str) -> str | None:
    """humaneval, humaneval_instruct, humaneval_plus ... -> humaneval; mbpp_plus -> mbpp; other tasks -> None."""
    return next((f for f in FAMILIES if task == f or task.startswith(f + "_")), None)


def code_tasks(tasks) -> list[str]:
    return [t for t in tasks if family_of(t)]


def check_code_execution(tasks, allowed: bool) -> None:
    found = code_tasks(tasks)
    if found and not allowed:
        raise ValueError(f"eval.tasks {found} score pass@k by running the programs the model writes on this machine; "
                         f"opt in with eval.allow_code_execution=true (lm-eval's own switch: {ALLOW_ENV}=1 and "
                         "--confirm_run_unsafe_code)")


@contextlib.contextmanager
def local_code_eval(backend):
    """evaluate.load('code_eval') returns `backend` inside the block; every other name loads as usual."""
    import evaluate

    original = evaluate.load

    def load(path, *args, **kwargs):
        return backend if path == "code_eval" else original(path, *args, **kwargs)

    evaluate.load = load
    try:
        yield
    finally:
        evaluate.load = original


@contextlib.contextmanager
def code_eval_scope(tasks):
    """Around lm-eval's task loading and evaluation: with code tasks among `tasks` (the opt-in was checked before
    training), their utils' evaluate.load('code_eval') gets the local backend. Yields what results.json records
    about the execution, given the tasks that ran: `record(runnable)`."""
    if not code_tasks(tasks):
        yield lambda runnable: {}
        return
    backend = CodeEval(allowed=True)

    def record(runnable) -> dict:
        families = sorted({family_of(t) for t in code_tasks(runnable)})
        return {"backend": "sparsetune.evaluation.code_execution.CodeEval (evaluate's code_eval interface, local)",
                "timeout_s": backend.timeout, "isolation": "one `python -I` subprocess per program, own temp dir",
                "families": families} if families else {}

    with local_code_eval(backend):
        yield record
