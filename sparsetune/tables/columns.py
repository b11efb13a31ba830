"""Table columns: which number of a results.json fills a column, on which scale, and for which task's runs.

A column reads one metric (`metric`: dotted paths from the record root, the first one present wins), or the
mean of several (`mean_of`, e.g. SPP's LM-eval average of seven zero-shot accuracies: over the parts a run has when
two or more are there, the missing ones listed by `missing`, so the table marks it), or averages other
columns of the same row (`avg_of`: the papers' "Avg."). `task` limits it to runs of those training tasks
(GLUE columns); an empty `task` takes any run that has the metric (lm-eval, perplexity). `factor` converts
our number to the paper's scale (accuracy 0.85 -> 85.0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

GLUE_NAMES = {"mnli": "MNLI-m", "qqp": "QQP", "qnli": "QNLI", "sst2": "SST-2", "cola": "CoLA", "stsb": "STS-B",
              "mrpc": "MRPC", "rte": "RTE"}
METRIC_NAMES = {"accuracy": "acc", "matthews_correlation": "MCC", "pearson": "Pearson", "f1": "F1",
                "spearmanr": "Spearman"}
HARNESS_KEYS = ("acc", "exact_match", "exact_match/flexible-extract", "acc_norm")  # lm-eval's first number (gsm8k: a filter)


@dataclass(frozen=True)
class Column:
    id: str
    label: str
    metric: tuple[str, ...] = ()
    mean_of: tuple[str, ...] = ()
    avg_of: tuple[str, ...] = ()
    task: tuple[str, ...] = ()
    factor: float = 1.0
    lower_is_better: bool = False
    kind: str = "score"  # score | params (parameter counts: never averaged, never used to select)

    @property
    def computed(self) -> bool:
        return bool(self.avg_of)

    def accepts(self, task: str | None) -> bool:
        return not self.task or task in self.task

    def value(self, record: dict, task: str | None) -> float | None:
        """This column's number for one run, on the paper's scale; None when the run does not have it."""
        if self.computed or not self.accepts(task):
            return None
        if self.mean_of:
            parts = [v for v in (lookup(record, p) for p in self.mean_of) if v is not None]
            return self.factor * sum(parts) / len(parts) if len(parts) >= 2 else None
        for path in self.metric:
            found = lookup(record, path)
            if found is not None:
                return self.factor * found
        return None


    def missing(self, record: dict) -> tuple[str, ...]:
        """The `mean_of` parts this run lacks (e.g. an lm-eval task skipped for want of data)."""
        return tuple(p for p in self.mean_of if lookup(record, p) is None)


def part_name(path: str) -> str:
    """'metrics.harness.boolq.acc' -> 'boolq': the name a mean_of part is known by in notes."""
    parts = path.split(".")
    return parts[-2] if len(parts) >= 2 else path


def lookup(record: dict, dotted: str) -> float | None:
    """A finite number at a dotted path, else None (absent, non-numeric, NaN)."""
    node = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, (int, float)) or not math.isfinite(node):
        return None
    return float(node)


def default_columns(record: dict) -> list[Column]:
    """The columns one run fills when no paper table is asked for: its task's main metric (x100 for
    classification scores), GSM8K strict / flexible match, each lm-eval task, WikiText-2 perplexity."""
    cfg = record.get("config") or {}
    task = cfg.get("task") or {}
    name, main, kind = task.get("name"), task.get("main_metric") or "", task.get("kind")
    metrics = record.get("metrics") or {}
    cols = []
    if kind in ("classification", "regression") and name:
        label = f"{GLUE_NAMES.get(name, name)} {METRIC_NAMES.get(main, main)}"
        cols.append(Column(name, label, metric=(f"metrics.eval.{main}",), task=(name,), factor=100.0))
    if isinstance(metrics.get("gsm8k"), dict):
        for key, short in (("flexible_extract", "flexible"), ("strict_match", "strict")):
            cols.append(Column(f"{name}/gsm8k_{short}", f"GSM8K {short} ({name})",
                               metric=(f"metrics.gsm8k.{key}",), task=(name,), factor=100.0))
    elif main.startswith("generation."):
        metric = main.split(".", 1)[1]
        cols.append(Column(f"{name}/{metric}", f"{name} {metric.upper()}", metric=(f"metrics.{main}",), task=(name,),
                           lower_is_better=metric == "ter"))
    for entry, values in sorted((metrics.get("harness") or {}).items()):
        key = next((k for k in HARNESS_KEYS if isinstance(values, dict) and k in values), None)
        if key:
            cols.append(Column(f"lm-eval:{entry}", f"{entry} {key} (lm-eval)", metric=(f"metrics.harness.{entry}.{key}",),
                               factor=100.0))
    ppl = ("metrics.perplexity.perplexity", "metrics.wikitext2_ppl")  # run() / scripts/prune_ppl.py
    if any(lookup(record, p) is not None for p in ppl):
        cols.append(Column("wikitext2_ppl", "WikiText-2 ppl", metric=ppl, lower_is_better=True))
    return cols


def default_average(columns: list[Column]) -> Column | None:
    """Avg. over the percentage-scale score columns (classification, lm-eval), when there are two or more."""
    scored = tuple(c.id for c in columns
                   if c.kind == "score" and c.factor == 100.0 and not c.lower_is_better and not c.computed)
    return Column("avg", "Avg.", avg_of=scored) if len(scored) >= 2 else None
