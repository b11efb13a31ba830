"""GSM8K as task=gsm8k / metamathqa report it: lm-eval's own gsm8k or gsm8k_cot on the task's GSM8K files.

The tasks train on their own templates; the number they report after training (metrics.gsm8k) is lm-eval's
generation task through the harness: its prompt and few-shot examples, its stop sequences and greedy decoding,
its strict-match and flexible-extract filters. Local files go through the local tasks (local_tasks.py); without
them it is lm-eval's hub task.
"""
from __future__ import annotations

from omegaconf import OmegaConf

from ..errors import ConfigError
from .schema import EvalConfig

LM_EVAL_TASKS = {"qa": "gsm8k", "cot": "gsm8k_cot"}  # task.options.eval_prompt -> lm-eval task
FILTERS = {"strict_match": "exact_match/strict-match", "flexible_extract": "exact_match/flexible-extract"}


def lm_eval_task(eval_prompt: str) -> str:
    if eval_prompt not in LM_EVAL_TASKS:
        raise ConfigError(f"task.options.eval_prompt={eval_prompt!r}; allowed: {', '.join(LM_EVAL_TASKS)} "
                          f"(lm-eval's {' / '.join(LM_EVAL_TASKS.values())})")
    return LM_EVAL_TASKS[eval_prompt]


def eval_config(task: str, files: dict[str, str], opts: dict):
    ecfg = OmegaConf.structured(EvalConfig)
    ecfg.merge_with({"name": task, "tasks": [task], "files": {task: dict(files)} if files else {},
                     "num_fewshot": opts["num_fewshot"], "limit": opts["eval_examples"],
                     "batch_size": int(opts["eval_batch_size"]), "max_gen_toks": opts["max_new_tokens"], "strict": True})
    return ecfg


def gsm8k_evaluator(files: dict[str, str], opts: dict):
    """extras evaluator. `files`: the GSM8K splits with a local file ({test: ..} and, for gsm8k's few-shot
    examples, train); empty: lm-eval's hub task."""
    task = lm_eval_task(opts["eval_prompt"])

    def evaluate(model, tokenizer, cfg) -> dict:
        from .harness import run_harness
        from .suite import work_dir_of

        ecfg = eval_config(task, files, opts)
        was_training = model.training
        try:
            out = run_harness(model, tokenizer, ecfg, work_dir_of(cfg, ecfg))
        finally:
            model.train(was_training)
        scores, settings = out["harness"][task], out["harness_settings"]
        entry = settings["per_task"][task]
        return {
            **{ours: scores[theirs] for ours, theirs in FILTERS.items()},
            **{f"{ours}_stderr": scores.get(theirs.replace("/", "_stderr/")) for ours, theirs in FILTERS.items()},
            "lm_eval_task": task, "num_examples": entry["n_samples"]["effective"], "num_fewshot": entry["num_fewshot"],
            "lm_eval": settings,
        }

    return evaluate
