"""Markdown for a built table: our rows, each followed by its published row and the difference, then notes,
the published rows we have no run for, and the runs that were not averaged."""
from __future__ import annotations

import statistics

from .build import IDENTITY, Cell, Row, Table
from .columns import Column, part_name
from .published import PubRow, PubTable
from .runs import MISSING

TASK_SIZES = ("task.max_train_samples", "task.max_eval_samples", "task.max_length")  # the task settings worth a line
LABELS = {"model.name": "model", "method.name": "method", "salience.name": "salience", "mask_schedule.name": "mask",
          "task.name": "task", "method.scope": "scope", "method.sparsity": "sparsity", "method.pattern": "pattern"}


def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.2e}" if abs(v) >= 1e5 else f"{v:.2f}"


def fmt_cell(cell: Cell | None, column: Column | None = None) -> str:
    if cell is None:
        return "—"
    if column is not None and column.kind == "params":  # a count, not a score over seeds: its range over the row's runs
        lo, hi = min(cell.values), max(cell.values)
        return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}–{fmt(hi)}"
    std = f" ± {cell.std:.2f}" if cell.std is not None else ""
    return f"{fmt(cell.mean)}{std} (n={cell.n})"


def fmt_setting(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, tuple):
        return "[" + ", ".join(map(fmt_setting, v)) + "]"
    return str(v)


def fmt_count(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K" if n >= 1e3 else f"{n:.0f}"


def key_labels(paths: list[str]) -> list[str]:
    short = [LABELS.get(p, p.rsplit(".", 1)[-1]) for p in paths]
    return [s if short.count(s) == 1 else p for s, p in zip(short, paths)]


def trainable(row: Row) -> str:
    counts = [r.record.get("params") or {} for r in row.runs]
    pairs = sorted({(c.get("trainable"), c.get("trainable_percent")) for c in counts if c.get("trainable") is not None},
                   key=lambda p: p[0])
    if not pairs:
        return "—"
    lo, hi = pairs[0], pairs[-1]
    pct = lambda p: f"{p:.2f}%" if isinstance(p, (int, float)) else "?"  # noqa: E731
    if lo == hi:
        return f"{fmt_count(lo[0])} ({pct(lo[1])})"
    return f"{fmt_count(lo[0])}–{fmt_count(hi[0])} ({pct(lo[1])}–{pct(hi[1])})"


def published_avg(pub: PubRow, column: Column, used: tuple[str, ...]) -> tuple[float | None, bool]:
    """The paper's Avg. over the same columns as ours: its printed value when we have them all, else the mean
    of its numbers over the columns we have (marked)."""
    if set(used) == set(column.avg_of):
        v = pub.values.get(column.id)
        return (v.value if v else None), False
    if all(c in pub.values for c in used):
        return statistics.fmean(pub.values[c].value for c in used), True
    return None, True


def comparison_lines(row: Row, table: Table, n_keys: int, extra: int) -> list[str]:
    pub = row.published
    pub_line, diff_line = [], []
    for c in table.columns:
        if c.computed:
            ours = row.averages.get(c.id)
            printed = pub.values[c.id].value if c.id in pub.values else None
            theirs, partial = published_avg(pub, c, ours[1]) if ours else (printed, False)
            mark = "*" if partial and ours else ""
            pub_line.append(f"{fmt(theirs)}{mark}" if theirs is not None else "—")
            diff_line.append(f"{ours[0] - theirs:+.2f}{mark}" if ours and theirs is not None else "—")
            continue
        v = pub.values.get(c.id)
        ours = row.cells.get(c.id)
        mark = "*" if c.id in row.partial_means else ""
        pub_line.append("—" if v is None else fmt(v.value) + (f" ± {v.std:.2f}" if v.std is not None else ""))
        diff_line.append(f"{ours.mean - v.value:+.2f}{mark}" if v is not None and ours is not None else "—")
    lead = [f"↳ published ({pub.model})"] + [""] * (n_keys - 1)
    delta = ["↳ Δ ours − published"] + [""] * (n_keys - 1)
    pad = [""] * extra
    return ["| " + " | ".join(lead + pub_line + pad) + " |", "| " + " | ".join(delta + diff_line + pad) + " |"]


def row_line(row: Row, table: Table, show_trainable: bool) -> str:
    cells = []
    for c in table.columns:
        if c.computed:
            avg = row.averages.get(c.id)
            partial = avg is not None and set(avg[1]) != set(c.avg_of)
            cells.append("—" if avg is None else f"{fmt(avg[0])}{'*' if partial else ''}")
        else:
            cells.append(fmt_cell(row.cells.get(c.id), c) + ("*" if c.id in row.partial_means else ""))
    keys = [fmt_setting(v) if v != MISSING else MISSING for v in row.key] or ["all runs"]
    tail = [trainable(row)] if show_trainable else []
    if table.paper:
        if row.published:
            tail.append(f"{row.published.label}" + (f" — {row.scale}" if row.scale else ""))
        else:
            tail.append("no published counterpart" + (f" — {row.scale}" if row.scale else ""))
    return "| " + " | ".join(keys + cells + tail) + " |"


def header(table: Table) -> list[str]:
    out = []
    p = table.paper
    if p:
        out.append(f"## {p.spec}: {p.paper.upper()} Table {p.table} — {p.title}")
        out.append(f"Published numbers: ../shared/papers/{p.source}; our rows are compared with the block(s) "
                   f"{', '.join(table.compared_models) or p.models[0]}.")
    if table.key_paths:
        out.append("Rows: one per distinct value of " + ", ".join(table.key_paths) +
                   " (the seed is not a setting: ± is the sample std over seeds, n the number of seeds).")
    else:
        out.append("Rows: every run has the same settings (± is the sample std over seeds, n the number of seeds).")
    if table.constant:
        out.append("Same in every row: " + ", ".join(
            f"{k}={fmt_setting(v)}" + (" (the methods that read it)" if k in table.partly_read else "")
            for k, v in table.constant.items()) + ".")
    if table.per_task:
        parts = [f"{k} ({', '.join(f'{t}={fmt_setting(v)}' for t, v in sorted(d.items(), key=lambda kv: str(kv[0])))})"
                 for k, d in table.per_task.items() if not k.startswith("task.") or k in TASK_SIZES]
        if parts:
            out.append("Settings that change only with the task: " + "; ".join(parts) + ".")
    return out


def notes(table: Table) -> list[str]:
    out = []
    partial = [c for c in table.columns if c.computed and any(
        c.id in r.averages and set(r.averages[c.id][1]) != set(c.avg_of) for r in table.rows)]
    for c in partial:
        out.append(f"* {c.label} over the columns a row has (not all of {', '.join(c.avg_of)}); the published value "
                   "beside it is the paper's numbers averaged over the same columns.")
    for c in table.columns:
        lacked = set().union(*(r.partial_means.get(c.id, set()) for r in table.rows))
        if lacked:
            out.append(f"* {c.label} over the parts a run has: without {', '.join(sorted(map(part_name, lacked)))} "
                       f"(of {', '.join(map(part_name, c.mean_of))}); a published value beside it is over all of "
                       "them, so its Δ compares different sets.")
    p = table.paper
    if p:
        out += [f"Paper: {n}" for n in p.notes]
        noted = {id(x.published): x.published for x in table.rows if x.published and x.published.note}
        out += [f"Published row {r.label!r} ({r.model}): {r.note}" for r in noted.values()]
    out += [f"Search: {n}" if "took" in n else n for n in table.notes]
    return [f"- {n}" for n in out]


def unmatched(table: Table) -> list[str]:
    p = table.paper
    if not p:
        return []
    used = {id(r.published) for r in table.rows if r.published}
    out = []
    for model in table.compared_models or p.models[:1]:
        missing = [r.label for r in p.rows if r.model == model and id(r) not in used]
        if missing:
            out.append(f"Published rows of {model} with no run here: " + "; ".join(missing) + ".")
    return out


def apart_keys(run, table: Table) -> list[str]:
    """What tells a run that was not averaged apart: the row settings, and any usual setting it does not share."""
    differs = [k for k in IDENTITY if k in run.settings and k not in table.key_paths
               and (k not in table.constant or run.settings[k] != table.constant[k])]
    return table.key_paths + differs


def apart_lines(table: Table) -> list[str]:
    if not table.apart:
        return []
    out = [f"### Not averaged ({len(table.apart)} run(s): failed, diverged, interrupted or without a usable record)",
           "", "| status | task | seed | settings | run | detail |", "|---|---|---|---|---|---|"]
    for a in table.apart:
        run = a.run
        keys = apart_keys(run, table) if run else []
        settings = " ".join(f"{k}={fmt_setting(run.settings.get(k, MISSING))}" for k in keys)
        detail = a.detail.replace("|", "/")
        where = a.path.parent if a.path.name == "results.json" else a.path
        cells = [a.status, run.task if run else "", run.seed if run else "", settings, where, detail]
        out.append("| " + " | ".join(map(str, cells)) + " |")
    return out


def render_table(table: Table) -> str:
    show_trainable = not any(c.kind == "params" for c in table.columns)
    keys = key_labels(table.key_paths) or ["runs"]
    heads = keys + [c.label for c in table.columns] + (["trainable"] if show_trainable else [])
    heads += ["published row"] if table.paper else []
    lines = header(table) + ["", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in table.rows:
        lines.append(row_line(row, table, show_trainable))
        if row.published:
            lines += comparison_lines(row, table, len(keys), len(heads) - len(keys) - len(table.columns))
    tail = notes(table) + unmatched(table)
    if tail:
        lines += [""] + tail
    apart = apart_lines(table)
    if apart:
        lines += [""] + apart
    return "\n".join(lines)


def render_published(p: PubTable) -> str:
    """The paper's table as transcribed (scripts/paper_tables.py)."""
    heads = ["model", "row"] + [c.label for c in p.columns] + ["settings"]
    lines = [f"## {p.spec}: {p.paper.upper()} Table {p.table} — {p.title}", f"Source: ../shared/papers/{p.source}; "
             f"rows match ours on: {', '.join(p.match_on)}.", "", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in p.rows:
        vals = [("—" if c.id not in r.values else fmt(r.values[c.id].value) +
                 (f" ± {r.values[c.id].std:.2f}" if r.values[c.id].std is not None else "")) for c in p.columns]
        settings = ", ".join(f"{k}={fmt_setting(tuple(v) if isinstance(v, list) else v)}" for k, v in r.settings.items())
        lines.append("| " + " | ".join([r.model, r.label + (" †" if r.note else "")] + vals + [settings]) + " |")
    lines += [""] + [f"- {n}" for n in p.notes] + [f"- † {r.label} ({r.model}): {r.note}" for r in p.rows if r.note]
    return "\n".join(lines).rstrip()
