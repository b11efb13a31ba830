"""lm-eval run in-process on the in-memory (trained, merged) model.

Online with no data_dir, tasks are lm-eval's own names through its full TaskManager. With eval.data_dir (or
eval.files), they are the same lm-eval tasks with only their dataset pointed at converted local files
(`local_tasks`), loaded through a TaskManager that indexes only their folders (the 25 s index of every built-in
task is never paid). One `simple_evaluate` call per distinct (num_fewshot, limit), all on one HFLM.
"""
from __future__ import annotations

import copy
import logging
from collections import defaultdict
from pathlib import Path

from ..hub import hub_reachable
from .code_tasks import code_eval_scope
from .local_tasks import LOCAL_TASK_NAMES, TASKS, build_local_suite, lm_eval_tasks_dir

log = logging.getLogger(__name__)
BOOTSTRAP_ITERS = 100000  # lm-eval's default; `acc` stderr is closed-form, so this costs nothing here
PYTHON_RANDOM_SEED = 0  # lm-eval's default for python's `random`


def per_task(value, tasks: list[str], key: str, default, minimum: int = 0) -> dict[str, int | None]:
    """An int for every task, or a {task: int} mapping (tasks not named get `default`). A mapping may name known
    tasks that this run does not evaluate (a preset's `{mmlu: 5}` under a narrowed eval.tasks); any other name
    is a typo and fails."""
    def checked(v, where):
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{where} must be an integer >= {minimum}, got {v!r}")
        return v

    if value is None or isinstance(value, int):
        return {t: checked(value if value is not None else default, key) for t in tasks}
    if hasattr(value, "items"):
        unknown = sorted(set(value) - set(tasks) - set(LOCAL_TASK_NAMES))
        if unknown:
            raise ValueError(f"{key} names tasks {unknown} that are not in eval.tasks {tasks}")
        return {t: checked(value.get(t, default), f"{key}.{t}") for t in tasks}
    raise ValueError(f"{key} must be an integer or a mapping task -> integer, got {value!r}")


def task_source(ecfg) -> str:
    """local (data_dir / files given) | hub (reachable) | a clear error naming the local option."""
    if ecfg.data_dir or ecfg.files:
        return "local"
    if hub_reachable():
        return "hub"
    raise ValueError(
        "lm-eval tasks need their data: the Hugging Face Hub is unreachable and eval.data_dir is not set. "
        f"Point eval.data_dir at a local data root (layout of ../shared/data; local tasks: {LOCAL_TASK_NAMES}) "
        "or name single files with eval.files.<task>=<path>")


def effective_max_length(model, cap: int | None) -> int | None:
    """The configured cap, never above the positions the model was built for."""
    own = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if cap is None:
        return None  # lm-eval resolves it from the model config
    return min(int(cap), int(own)) if own else int(cap)


def make_lm(model, tokenizer, batch_size: int, max_length: int | None):
    from lm_eval.models.huggingface import HFLM

    # HFLM may add a pad token to the tokenizer it holds: give it a copy so the exported tokenizer is untouched
    return HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=batch_size, max_length=max_length)


def task_yaml(manager, name: str, source: str) -> str | None:
    """Where lm-eval defines `name`, relative to the installed package (lm_eval/tasks/...); a local task's is the
    YAML its local copy includes."""
    if source == "local":
        return f"lm_eval/tasks/{TASKS[name].builtin}"
    entry = manager.task_index.get(name)
    if entry is None or entry.yaml_path is None:
        return None
    path, root = Path(entry.yaml_path).resolve(), lm_eval_tasks_dir().resolve()
    return f"lm_eval/tasks/{path.relative_to(root)}" if path.is_relative_to(root) else str(path)


def clean_metrics(entry: dict) -> dict:
    """{"acc,none": .5, "acc_stderr,none": .1, "alias": ..} -> {"acc": .5, "acc_stderr": .1}."""
    out = {}
    for key, value in entry.items():
        if "," not in key:
            continue
        metric, filt = key.split(",", 1)
        out[metric if filt == "none" else f"{metric}/{filt}"] = None if value == "N/A" else value
    return out


def sample_hash(samples: list[dict]) -> str:
    """lm-eval's own task hash (EvaluationTracker): over every sample's doc, prompt and target hashes."""
    from lm_eval.utils import hash_string

    return hash_string("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in samples))


def summarize_groups(settings: dict, subtasks: dict[str, list[str]]) -> None:
    """Give each group the totals of its leaves: samples, one hash over the children's hashes, shots."""
    from lm_eval.utils import hash_string

    def visit(name: str) -> dict:
        entry = settings.setdefault(name, {})
        kids = [visit(c) for c in subtasks.get(name, [])]
        if kids:
            entry["n_samples"] = {k: sum(c.get("n_samples", {}).get(k, 0) for c in kids) for k in ("original", "effective")}
            entry["hash"] = hash_string("".join(c.get("hash", "") for c in kids))
            shots = {c.get("num_fewshot") for c in kids}
            entry["num_fewshot"] = shots.pop() if len(shots) == 1 else sorted(shots, key=str)
        return entry

    for group in subtasks:
        visit(group)


def collect(results: dict) -> tuple[dict, dict]:
    """Split one simple_evaluate result into (metrics per entry, settings per entry)."""
    metrics = {name: clean_metrics(entry) for name, entry in results["results"].items()}
    subtasks = {g: list(c) for g, c in results.get("group_subtasks", {}).items()}
    settings = {}
    for name in results["results"]:
        entry = {"version": results["versions"].get(name), "num_fewshot": results["n-shot"].get(name),
                 "alias": str(results["results"][name].get("alias", name)).strip(" -")}
        if name in results.get("n-samples", {}):
            entry["n_samples"] = dict(results["n-samples"][name])
        if name in results.get("samples", {}):
            entry["hash"] = sample_hash(results["samples"][name])
        if name in subtasks:
            entry["subtasks"] = subtasks[name]
        settings[name] = entry
    summarize_groups(settings, subtasks)
    return metrics, settings


def run_harness(model, tokenizer, ecfg, work_dir: str | Path) -> dict:
    """Evaluate `ecfg.tasks`; returns {"harness", "harness_subtasks", "harness_settings"}."""
    with code_eval_scope(list(ecfg.tasks)) as code_record:  # eval.allow_code_execution was checked before training
        return evaluate_tasks(model, tokenizer, ecfg, work_dir, code_record)


def evaluate_tasks(model, tokenizer, ecfg, work_dir: str | Path, code_record) -> dict:
    import lm_eval
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    tasks = list(ecfg.tasks)
    fewshot = per_task(ecfg.num_fewshot, tasks, "eval.num_fewshot", None)  # None: the task's own lm-eval default
    limits = per_task(ecfg.limit, tasks, "eval.limit", None, minimum=1)
    source = task_source(ecfg)
    skipped, data = {}, {}
    if source == "local":
        suite = build_local_suite(tasks, ecfg.data_dir, dict(ecfg.files or {}), work_dir, fewshot, strict=ecfg.strict)
        skipped, data = suite.skipped, suite.data
        for name, reason in skipped.items():
            log.warning("eval: skipping %s: %s", name, reason)
        # by name: this manager indexes the local copies under lm-eval's own task names
        runnable, manager = [t for t in tasks if t in suite.specs], suite.manager
    else:
        runnable, manager = tasks, TaskManager()

    code_execution = code_record(runnable)
    max_length = effective_max_length(model, ecfg.max_length)
    lm = make_lm(model, tokenizer, int(ecfg.batch_size), max_length) if runnable else None
    max_gen_toks = ecfg.get("max_gen_toks")
    # lm-eval's --gen_kwargs: merged into generation tasks' generation_kwargs (HFLM's own cap is 256)
    gen_kwargs = {"max_gen_toks": int(max_gen_toks)} if max_gen_toks is not None else None
    buckets = defaultdict(list)
    for name in runnable:
        buckets[(fewshot[name], limits[name])].append(name)
    metrics, entry_settings, top_level = {}, {}, []
    for (shots, limit), names in buckets.items():
        out = simple_evaluate(
            model=lm, tasks=names, num_fewshot=shots, limit=limit, task_manager=manager, log_samples=True, gen_kwargs=gen_kwargs,
            bootstrap_iters=BOOTSTRAP_ITERS, random_seed=PYTHON_RANDOM_SEED, numpy_random_seed=ecfg.seed,
            torch_random_seed=ecfg.seed, fewshot_random_seed=ecfg.seed, confirm_run_unsafe_code=bool(code_execution),
        )
        m, s = collect(out)
        children = {c for sub in out.get("group_subtasks", {}).values() for c in sub}
        top_level += [n for n in out["results"] if n not in children]
        metrics.update(m)
        entry_settings.update(s)
    for name in runnable:
        entry_settings.setdefault(name, {})["task_yaml"] = task_yaml(manager, name, source)
    for name, info in data.items():
        entry_settings.setdefault(name, {})["data"] = info
    settings = {
        "lm_eval_version": lm_eval.__version__, "source": source, "tasks": tasks, "num_fewshot": fewshot,
        "limit": limits, "batch_size": int(ecfg.batch_size), "max_length": lm.max_length if lm else max_length,
        "max_length_cap": ecfg.max_length, "max_gen_toks": max_gen_toks, "data_dir": ecfg.data_dir,
        "seeds": {"random": PYTHON_RANDOM_SEED, "numpy": ecfg.seed, "torch": ecfg.seed, "fewshot": ecfg.seed},
        "bootstrap_iters": BOOTSTRAP_ITERS, "skipped": skipped, "per_task": entry_settings,
        **({"code_execution": code_execution} if code_execution else {}),
    }
    return {
        "harness": {n: metrics[n] for n in top_level},
        "harness_subtasks": {n: v for n, v in metrics.items() if n not in top_level},
        "harness_settings": settings,
    }
