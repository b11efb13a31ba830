"""task=e2e | dart | webnlg: data-to-text generation with a causal LM (PST's GPT-2 experiments).

Sequence layout:  [BOS] <linearised source><separator> <reference> [EOS]  (defaults: BOS on, separator
" ||"); the loss is on " <reference> [EOS]" only. The linearisation follows the LoRA / PST NLG code
(see data_to_text_files.py); LoRA's own files put BOS before the source and EOS after the reference too.

Evaluation (extras["evaluators"]["generation"]): the eval split's rows are grouped by source, each unique
source is decoded once with beam search, and the hypotheses are scored against all of that source's
references. metrics.generation holds the papers' scores, computed as their scorers do (nlg_scorer.py, the
same function as scripts/score_nlg.py): BLEU, NIST, METEOR, ROUGE_L, CIDEr (+ TER on 0-1 for DART /
WebNLG), with "scorer" (definitions, tokenisation, versions) and "unavailable" (METEOR / ROUGE_L / CIDEr
without pycocoevalcap + Java); and, lower-case, sacrebleu's standard bleu / chrf / ter on the raw strings.
PST decodes with beam 10, length penalty 0.8, no-repeat-ngram 4 (our defaults). Its LoRA-derived beam search
also divides by generated length ** lp, but runs all eval_len steps (no early stop) and blocks repeated
n-grams among the generated tokens only (transformers counts the prompt's n-grams too), so equal settings
are not bit-equal decoders. CPU runs override beams / eval_examples to something small.

Sources: task.data_files={split: file} or task.data_dir with the original file names (LAYOUTS), else the
hub (hub_id / hub_config in the task yaml). The project's readers (data_to_text_files.py) turn every source
into (source, reference) pairs -- E2E's MR linearisation, one pair per DART annotation, WebNLG's id-keyed
entries -- which the CLI's preflight makes before torch loads and the generation evaluator groups; the pairs
then become a cached Arrow dataset (arrow_cache.rows_dataset), so a second run reuses their tokenisation.
"""
from __future__ import annotations

import logging

from ..errors import ConfigError
from ..evaluation.nlg_metrics import sacrebleu_scores
from ..evaluation.nlg_scorer import score_nlg
from ..registry import TASK_LOADERS
from .arrow_cache import cached_map, rows_dataset, text_features
from .base import TaskData
from .causal_lm import collator_for, first_rows, prompt_ids, subset_train, task_options, tokenize_prompt_target, wants_bos
from .data_to_text_files import LAYOUTS, PAIRS, group_references, local_pairs
from .generate import generate, settings
from .local_files import hub_splits

log = logging.getLogger(__name__)
DEFAULTS = {
    "separator": " ||", "add_bos": True, "add_eos": True, "train_on_inputs": False, "train_subset": "random",
    "generate_split": None, "eval_examples": None, "num_beams": 10, "length_penalty": 0.8, "no_repeat_ngram_size": 4,
    "max_new_tokens": 64, "early_stopping": True, "eval_batch_size": 4, "lowercase": False, "num_samples": 3,
    "hub_revision": "refs/convert/parquet",  # the three hub datasets are script-only; this is their parquet export
}


def raw_pairs(task, fmt: str, splits: list[str], revision: str | None) -> tuple[dict[str, list[dict]], str]:
    """{split: [{source, target}]} and where the rows came from."""
    local = local_pairs(task, fmt, splits)  # the CLI's data preflight has read these files already
    if local is not None:
        return local
    hub = hub_splits(task.hub_id, task.hub_config, splits, f"task.data_dir (files {LAYOUTS[fmt]}) or task.data_files", revision)
    where = f"hub {task.hub_id}" + (f"/{task.hub_config}" if task.hub_config else "") + f" @ {revision}"
    return {s: PAIRS[fmt](hub[s].to_list(), f"{where} split {s}") for s in splits}, where


def generation_evaluator(groups: list[tuple[str, list[str]]], opts: dict, bos: bool, fmt: str):
    gen = settings(opts)
    groups = groups[: opts["eval_examples"]] if opts["eval_examples"] else groups

    def evaluate(model, tokenizer, cfg) -> dict:
        prompts = [prompt_ids(tokenizer, source + opts["separator"], bos) for source, _ in groups]
        hyps = generate(model, tokenizer, prompts, gen)
        refs = [r for _, r in groups]
        samples = [{"source": s, "prediction": h, "references": r} for (s, r), h in zip(groups, hyps)]
        official = score_nlg(fmt, hyps, refs)
        for reason in dict.fromkeys(official["unavailable"].values()):
            log.warning("generation metrics not computed: %s", reason)
        return {
            **official["scores"], "scorer": official["scorer"], "unavailable": official["unavailable"],
            **sacrebleu_scores(hyps, refs, lowercase=bool(opts["lowercase"])),
            "num_sources": len(groups), "num_references": sum(len(r) for r in refs),
            "decoding": {**gen, "strategy": "beam" if gen["num_beams"] > 1 else "greedy"},
            "samples": samples[: int(opts["num_samples"])],
        }

    return evaluate


def load_data_to_text(task, tokenizer, seed: int, fmt: str) -> TaskData:
    opts = task_options(task, DEFAULTS)
    if not task.eval_splits:
        raise ConfigError(f"task {task.name!r} needs at least one eval split")
    gen_split = opts["generate_split"] or task.eval_splits[0]
    if gen_split not in task.eval_splits:
        raise ConfigError(f"task.options.generate_split={gen_split!r} must be one of task.eval_splits={list(task.eval_splits)}")
    settings(opts)  # bad generation numbers fail before tokenization
    splits = list(dict.fromkeys([task.train_split, *task.eval_splits]))
    raw, source = raw_pairs(task, fmt, splits, opts["hub_revision"])
    bos = wants_bos(tokenizer, opts["add_bos"])
    sep = opts["separator"]
    to_ds = lambda pairs: cached_map(rows_dataset(pairs, text_features(["source", "target"])), lambda b: {
        "prompt": [source + sep for source in b["source"]], "target": [" " + target for target in b["target"]]},
        batched=True, remove_columns=["source", "target"], desc="format")
    enc = lambda ds: tokenize_prompt_target(ds, tokenizer, task.max_length, train_on_inputs=bool(opts["train_on_inputs"]),
                                            bos=bos, eos=bool(opts["add_eos"]))
    train_ds, dropped_train = enc(subset_train(to_ds(raw[task.train_split]), task.max_train_samples, seed, opts["train_subset"]))
    evals, dropped = {}, {"train": dropped_train}
    for split in task.eval_splits:
        evals[split], dropped[split] = enc(first_rows(to_ds(raw[split]), task.max_eval_samples))
    groups = group_references(raw[gen_split])
    return TaskData(
        train=train_ds, eval=evals, collator=collator_for(tokenizer), compute_metrics=None,
        info={"source": source, "train_split": task.train_split, "eval_splits": list(task.eval_splits), "num_train": len(train_ds),
              "num_eval": {s: len(d) for s, d in evals.items()}, "max_length": task.max_length, "format": fmt,
              "layout": f"[BOS]{'' if bos else ' (off)'} <source>{opts['separator']} <reference> [EOS]", "bos": bos,
              "train_on_inputs": bool(opts["train_on_inputs"]), "generate_split": gen_split, "num_sources": len(groups),
              "dropped_without_target": dropped},
        extras={"evaluators": {"generation": generation_evaluator(groups, opts, bos, fmt)}},
    )


@TASK_LOADERS.register("e2e")
def load_e2e(task, tokenizer, seed: int) -> TaskData:
    return load_data_to_text(task, tokenizer, seed, "e2e")


@TASK_LOADERS.register("dart")
def load_dart(task, tokenizer, seed: int) -> TaskData:
    return load_data_to_text(task, tokenizer, seed, "dart")


@TASK_LOADERS.register("webnlg")
def load_webnlg(task, tokenizer, seed: int) -> TaskData:
    return load_data_to_text(task, tokenizer, seed, "webnlg")
