"""Rows and cells of a results table: one row per distinct setting, ± std over seeds only.

The row key is every setting (flattened resolved config, bookkeeping dropped, see runs.py) that takes two
values among the runs, except the seed. A `task.*` setting that only changes with the task (max length, label
count ...) is a property of the column, not of the row; so is any setting named in `per_task`. Settings named
in `select` (e.g. train.lr, train.epochs) are searched instead: per row and task the point with the best mean
dev score is kept, as the papers' hyperparameter searches did, and the table says which point it took.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace

from ..errors import ConfigError
from .columns import Column, default_average, default_columns
from .published import PubRow, PubTable
from .runs import MISSING, NotAveraged, Run

GLUE_ORDER = ("mnli", "qqp", "qnli", "sst2", "cola", "stsb", "mrpc", "rte")
SHORT_NAMES = {"lr": "train.lr", "epochs": "train.epochs", "batch_size": "train.batch_size",
               "warmup_ratio": "train.warmup_ratio", "weight_decay": "train.weight_decay"}
# row-key display order: what a reader looks for first
KEY_ORDER = ("model.name", "method.name", "salience.name", "mask_schedule.name", "method.scope", "method.pattern",
             "method.sparsity", "method.density", "method.match_lora_rank", "method.r", "method.r1", "method.r2",
             "method.score_terms")
ALWAYS_SHOWN = ("method.sparsity", "method.pattern")  # a table's defining settings, even when the method fixes them
# shown once above the table when every row shares them
IDENTITY = ("model.name", "method.name", "salience.name", "mask_schedule.name", "method.sparsity", "train.lr",
            "train.epochs", "train.max_steps", "train.batch_size", "task.max_train_samples", "hardware.name")


@dataclass
class Cell:
    seeds: list
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if self.n > 1 else None


@dataclass
class Row:
    key: tuple
    runs: list[Run]
    cells: dict[str, Cell] = field(default_factory=dict)
    averages: dict[str, tuple[float, tuple[str, ...]]] = field(default_factory=dict)  # avg id -> (value, columns used)
    partial_means: dict[str, set[str]] = field(default_factory=dict)  # mean_of column id -> parts some run lacked
    published: PubRow | None = None
    scale: str | None = None


@dataclass
class Table:
    key_paths: list[str]
    columns: list[Column]
    rows: list[Row]
    apart: list[NotAveraged]
    constant: dict = field(default_factory=dict)
    partly_read: set[str] = field(default_factory=set)  # constant settings that some rows' methods never read
    per_task: dict[str, dict] = field(default_factory=dict)  # setting -> {task: value}
    notes: list[str] = field(default_factory=list)
    paper: PubTable | None = None
    compared_models: list[str] = field(default_factory=list)


def sort_value(v) -> tuple:
    if v is None or v == MISSING:
        return (0, 0.0, "")
    if isinstance(v, bool):
        return (1, float(v), "")
    if isinstance(v, (int, float)):
        return (1, float(v), "")
    return (2, 0.0, str(v))


def resolve_select(names: list[str], runs: list[Run]) -> list[str]:
    """--select-best lr,epochs -> [train.lr, train.epochs]; unknown names fail with the settings that exist."""
    known = set().union(*(r.settings for r in runs)) if runs else set()
    out = []
    for name in names:
        path = SHORT_NAMES.get(name, name)
        if path not in known:
            raise ConfigError(f"--select-best: no run has the setting {name!r}; give a short name "
                              f"({', '.join(SHORT_NAMES)}) or a dotted config key such as train.lr")
        out.append(path)
    return out


def table_columns(runs: list[Run], paper: PubTable | None) -> list[Column]:
    """The paper's columns in its order, then whatever else our runs report (never one number twice):
    scores, then averages, then parameter counts."""
    spec = list(paper.columns) if paper else []
    extra: list[Column] = []
    for run in runs:
        for c in default_columns(run.record):
            if any(c.metric[0] in s.metric and s.accepts(run.task) for s in spec + extra):
                continue  # the same number of this run is already a column
            if any(s.id == c.id for s in spec + extra):
                c = replace(c, id=f"{c.id}:{c.metric[0]}")
            extra.append(c)
    extra.sort(key=column_rank)
    if not paper:
        avg = default_average(extra)
        extra += [avg] if avg else []
    everything = spec + extra
    scores = [c for c in spec if c.kind == "score" and not c.computed]
    return scores + [c for c in spec if c.computed] + [c for c in extra if c.kind == "score"] + \
        [c for c in everything if c.kind == "params"]


def column_rank(c: Column) -> tuple:
    """GLUE in the usual order, other tasks' metrics, lm-eval tasks, perplexity last."""
    if c.task and c.id in GLUE_ORDER:
        return (0, GLUE_ORDER.index(c.id), c.id)
    return (1 if c.task else 2 if not c.lower_is_better else 3, 0, c.id)


def key_paths(runs: list[Run], columns: list[Column], skip: set[str], per_task: set[str]) -> tuple[list[str], dict]:
    """The settings that tell rows apart, and the settings that only change with the task."""
    tasks_of: dict[str, set] = defaultdict(set)
    for c in columns:
        if not c.task and not c.computed and c.kind == "score":
            tasks_of[c.id] |= {r.task for r in runs if c.value(r.record, r.task) is not None}
    # a metric every task reports (lm-eval after any fine-tuning): the task is then a setting of the row
    task_is_row = any(len(t) > 1 for t in tasks_of.values())
    keys, column_settings = [], {}
    for k in sorted(set().union(*(r.settings for r in runs))):
        if k in skip:
            continue
        # absent counts (a run recorded before an option existed), but not where the run's method never reads it
        values = {r.settings.get(k, MISSING) for r in runs if r.reads(k)}
        if len(values) < 2 and not (k == "task.name" and task_is_row):
            continue
        by_task: dict = defaultdict(set)
        for r in runs:
            by_task[r.task].add(r.settings.get(k, MISSING))
        if not task_is_row and (k.startswith("task.") or k in per_task) and all(len(v) == 1 for v in by_task.values()):
            column_settings[k] = {t: next(iter(v)) for t, v in by_task.items()}
            continue
        keys.append(k)
    return compact(keys, runs), column_settings


def compact(keys: list[str], runs: list[Run]) -> list[str]:
    """Drop `group.x` when `group.name` is a key and fixes it (a method's own defaults), then order for reading."""
    kept = []
    for k in keys:
        group = k.split(".", 1)[0]
        owner = f"{group}.name"
        if k != owner and owner in keys and k not in ALWAYS_SHOWN:
            pairs = defaultdict(set)
            for r in runs:
                pairs[r.settings.get(owner, MISSING)].add(r.settings.get(k, MISSING))
            if all(len(v) == 1 for v in pairs.values()):
                continue
        kept.append(k)
    rank = {k: i for i, k in enumerate(KEY_ORDER)}
    return sorted(kept, key=lambda k: (rank.get(k, len(rank)), k))


def dedupe_seeds(runs: list[Run], notes: list[str], where: str) -> list[Run]:
    """One run per seed: a rerun with the same settings and seed replaces the older record (noted)."""
    newest: dict = {}
    for r in sorted(runs, key=lambda r: r.mtime):
        if r.seed in newest:
            notes.append(f"{where}: seed {r.seed} ran twice; kept {r.path.parent}, not {newest[r.seed].path.parent}")
        newest[r.seed] = r
    return list(newest.values())


def criterion(run: Run, columns: list[Column]) -> float | None:
    """A run's dev score for the search: the mean of its higher-is-better scores, else minus its first
    lower-is-better one (perplexity)."""
    scored = [(c, c.value(run.record, run.task)) for c in columns if c.kind == "score" and not c.computed]
    higher = [v for c, v in scored if v is not None and not c.lower_is_better]
    if higher:
        return statistics.fmean(higher)
    lower = [v for c, v in scored if v is not None and c.lower_is_better]
    return -lower[0] if lower else None


def select_best(runs: list[Run], dims: list[str], columns: list[Column], notes: list[str], where: str) -> list[Run]:
    points: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        points[tuple(r.settings.get(d, MISSING) for d in dims)].append(r)
    scored = []
    for point, members in points.items():
        crit = [c for c in (criterion(r, columns) for r in members) if c is not None]
        if crit:
            scored.append((statistics.fmean(crit), point))
    if not scored:
        return runs
    best_score, best = max(scored, key=lambda s: (s[0], [sort_value(v) for v in s[1]]))
    took = ", ".join(f"{d.split('.')[-1]}={v}" for d, v in zip(dims, best))
    notes.append(f"{where}: took {took} (best mean dev score {abs(best_score):.2f} of {len(scored)} point(s))")
    return points[best]


def fill_row(row: Row, columns: list[Column], dims: list[str], notes: list[str], label: str) -> None:
    by_task: dict = defaultdict(list)
    for r in row.runs:
        by_task[r.task].append(r)
    for task, runs in sorted(by_task.items(), key=lambda kv: str(kv[0])):
        where = f"{label} / {task}"
        mine = [c for c in columns if c.accepts(task)]
        if dims:
            runs = select_best(runs, dims, mine, notes, where)
        for r in dedupe_seeds(runs, notes, where):
            for c in mine:
                v = c.value(r.record, r.task)
                if v is not None:
                    if c.missing(r.record):
                        row.partial_means.setdefault(c.id, set()).update(c.missing(r.record))
                    cell = row.cells.setdefault(c.id, Cell([], []))
                    cell.seeds.append(r.seed)
                    cell.values.append(v)
    for c in columns:
        if c.computed:
            have = tuple(x for x in c.avg_of if x in row.cells)
            if have:
                row.averages[c.id] = (statistics.fmean(row.cells[x].mean for x in have), have)


def scale_note(run: Run, paper: PubTable, pub_model: str) -> str | None:
    ours = (run.config.get("model") or {}).get("name")
    if ours != pub_model:
        kind = "CPU miniature" if ours in paper.miniature else "other model"
        return f"scale differs: {kind} (ours {ours}, paper {pub_model})"
    subset = (run.config.get("task") or {}).get("max_train_samples")
    return f"scale differs: train subset ({subset} examples)" if subset else None


def label_of(row: Row, paths: list[str]) -> str:
    return " ".join(f"{p.removesuffix('.name').split('.')[-1]}={v}" for p, v in zip(paths, row.key)) or "all runs"


def build_table(runs: list[Run], apart: list[NotAveraged], paper: PubTable | None = None,
                select: list[str] = (), per_task: list[str] = ()) -> Table:
    columns = table_columns(runs, paper)
    dims = resolve_select(list(select), runs)
    paths, column_settings = key_paths(runs, columns, set(dims), {SHORT_NAMES.get(p, p) for p in per_task})
    groups: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        groups[tuple(r.settings.get(p, MISSING) for p in paths)].append(r)
    notes: list[str] = []
    rows = []
    for key, members in groups.items():
        row = Row(key=key, runs=members)
        fill_row(row, columns, dims, notes, label_of(row, paths))
        if paper:
            row.published = paper.match(members[0])
            pub_model = paper.block_for((members[0].config.get("model") or {}).get("name"))
            row.scale = scale_note(members[0], paper, row.published.model if row.published else pub_model)
        rows.append(row)
    order = {id(r): i for i, r in enumerate(paper.rows)} if paper else {}
    rows.sort(key=lambda r: (order.get(id(r.published), len(order)), [sort_value(v) for v in r.key]))
    constant, partly_read = {}, set()
    for k in IDENTITY:
        readers = [r for r in runs if r.reads(k)]
        values = {r.settings.get(k, MISSING) for r in readers}
        if k not in paths and len(values) == 1 and k in readers[0].settings:
            constant[k] = readers[0].settings[k]
            if len(readers) < len(runs):  # mask_schedule.name=cubic, but full fine-tuning has no schedule
                partly_read.add(k)
    models = dict.fromkeys((r.config.get("model") or {}).get("name") for r in runs)
    compared = list(dict.fromkeys(paper.block_for(m) for m in models)) if paper else []
    return Table(key_paths=paths, columns=columns, rows=rows, apart=apart, constant=constant, per_task=column_settings,
                 notes=notes, paper=paper, compared_models=compared, partly_read=partly_read)
