"""evaluate_suite(model, tokenizer, cfg): the LLM benchmarks of a finished run (eval config group).

Called by run() on the trained, merged model. Returns {} for eval=none, else any of
  harness / harness_subtasks / harness_settings   (lm-eval, see harness.py)
  perplexity                                      (WikiText-2 in the Wanda / SparseGPT chunked form)
`check_eval_config` holds every check that needs no model, so a bad eval config fails before training.
lm-eval is imported only when an eval config asks for it (eval=none runs never pay for it).
"""
from __future__ import annotations

from pathlib import Path

from ..hub import hub_reachable

WIKITEXT_LOCAL = "wikitext-2-raw/test.hf_rows.txt"  # ../shared/data layout
PERPLEXITY_FORMATS = ("auto", "hf_rows", "jsonl", "json", "text")


def _eval_cfg(cfg):
    ecfg = cfg.get("eval") if hasattr(cfg, "get") else getattr(cfg, "eval", None)
    return None if ecfg is None or ecfg.name == "none" else ecfg


def check_eval_config(cfg) -> None:
    """Raise ValueError for an eval config that cannot run (types, ranges, missing data source)."""
    ecfg = _eval_cfg(cfg)
    if ecfg is None:
        return
    from .code_tasks import check_code_execution
    from .harness import per_task, task_source
    from .local_tasks import LOCAL_TASK_NAMES

    tasks = list(ecfg.tasks or [])
    if not tasks and not ecfg.perplexity.enabled:
        raise ValueError(f"eval={ecfg.name} has no tasks and perplexity is disabled: nothing to evaluate "
                         "(use eval=none to skip evaluation)")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"eval.tasks lists a task twice: {tasks}")
    check_code_execution(tasks, bool(ecfg.get("allow_code_execution")))
    per_task(ecfg.num_fewshot, tasks, "eval.num_fewshot", None)
    per_task(ecfg.limit, tasks, "eval.limit", None, minimum=1)
    if int(ecfg.batch_size) < 1:
        raise ValueError(f"eval.batch_size must be >= 1, got {ecfg.batch_size}")
    if ecfg.max_length is not None and int(ecfg.max_length) < 2:
        raise ValueError(f"eval.max_length must be >= 2 or null, got {ecfg.max_length}")
    if ecfg.get("max_gen_toks") is not None and int(ecfg.max_gen_toks) < 1:
        raise ValueError(f"eval.max_gen_toks must be >= 1 or null, got {ecfg.max_gen_toks}")
    if tasks and task_source(ecfg) == "local":
        unknown = [t for t in tasks if t not in LOCAL_TASK_NAMES]
        if unknown:
            raise ValueError(f"eval.tasks {unknown} have no local definition; with eval.data_dir / eval.files the "
                             f"tasks are {LOCAL_TASK_NAMES} (other lm-eval tasks need the hub)")
        if ecfg.data_dir and not Path(ecfg.data_dir).expanduser().is_dir():
            raise ValueError(f"eval.data_dir={ecfg.data_dir} is not a directory")
        for task, given in (ecfg.files or {}).items():
            if task not in tasks:
                raise ValueError(f"eval.files.{task} is given but {task} is not in eval.tasks {tasks}")
            named = given.items() if hasattr(given, "items") else [(None, given)]
            for split, path in named:
                if not Path(str(path)).expanduser().exists():
                    key = f"eval.files.{task}" + (f".{split}" if split else "")
                    raise ValueError(f"{key}={path} does not exist")
    ppl = ecfg.perplexity
    if ppl.enabled:
        if int(ppl.seqlen) < 2:
            raise ValueError(f"eval.perplexity.seqlen must be >= 2, got {ppl.seqlen}")
        if ppl.max_chunks is not None and int(ppl.max_chunks) < 1:
            raise ValueError(f"eval.perplexity.max_chunks must be >= 1 or null, got {ppl.max_chunks}")
        if int(ppl.batch_size) < 1:
            raise ValueError(f"eval.perplexity.batch_size must be >= 1, got {ppl.batch_size}")
        if ppl.fmt not in PERPLEXITY_FORMATS:
            raise ValueError(f"eval.perplexity.fmt must be one of {PERPLEXITY_FORMATS}, got {ppl.fmt!r}")
        perplexity_source(ecfg)


def perplexity_source(ecfg) -> Path | None:
    """The local WikiText-2 test file, or None to read the hub's wikitext-2-raw-v1 test split."""
    ppl = ecfg.perplexity
    if ppl.data_file:
        path = Path(ppl.data_file).expanduser()
        if not path.is_file():
            raise ValueError(f"eval.perplexity.data_file={ppl.data_file} does not exist")
        return path
    if ecfg.data_dir and (Path(ecfg.data_dir).expanduser() / WIKITEXT_LOCAL).is_file():
        return Path(ecfg.data_dir).expanduser() / WIKITEXT_LOCAL
    if hub_reachable():
        return None
    raise ValueError(
        "perplexity needs the WikiText-2 test text: the Hugging Face Hub is unreachable and neither "
        f"eval.perplexity.data_file nor <eval.data_dir>/{WIKITEXT_LOCAL} exists; set eval.perplexity.data_file")


def run_perplexity(model, tokenizer, ecfg) -> dict:
    from .perplexity import file_perplexity, text_perplexity

    ppl = ecfg.perplexity
    source = perplexity_source(ecfg)
    args = dict(seqlen=int(ppl.seqlen), max_chunks=ppl.max_chunks, batch_size=int(ppl.batch_size))
    if source is None:
        from datasets import load_dataset

        texts = load_dataset("wikitext", "wikitext-2-raw-v1", split="test")["text"]
        result = {**text_perplexity(model, tokenizer, texts, **args), "source": "hub:wikitext/wikitext-2-raw-v1/test"}
    else:
        result = file_perplexity(model, tokenizer, source, fmt=ppl.fmt, **args)
    return {**result, "dataset": "wikitext-2-raw test", "max_chunks": ppl.max_chunks, "batch_size": int(ppl.batch_size),
            "form": "token-level, '\\n\\n'-joined, non-overlapping seqlen chunks (Wanda / SparseGPT)"}


def work_dir_of(cfg, ecfg) -> Path:
    if ecfg.work_dir:
        return Path(ecfg.work_dir).expanduser()
    paths = cfg.get("paths") if hasattr(cfg, "get") else None
    if paths is None or not paths.get("cache_dir"):
        raise ValueError("set eval.work_dir (or paths.cache_dir): converted local task files are written there")
    return Path(paths.cache_dir).expanduser() / "lm_eval_local"


def evaluate_suite(model, tokenizer, cfg) -> dict:
    """Run the configured lm-eval tasks and perplexity on `model`; its train/eval mode is restored after."""
    ecfg = _eval_cfg(cfg)
    if ecfg is None:
        return {}
    check_eval_config(cfg)
    from .harness import run_harness

    was_training = model.training
    out = {}
    try:
        if ecfg.tasks:
            out.update(run_harness(model, tokenizer, ecfg, work_dir_of(cfg, ecfg)))
        if ecfg.perplexity.enabled:
            out["perplexity"] = run_perplexity(model, tokenizer, ecfg)
    finally:
        model.train(was_training)
    return out
