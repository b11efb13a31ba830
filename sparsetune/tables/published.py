"""The papers' published numbers (published/*.yaml): loading, validation, and matching our rows to theirs.

File format (one file per paper):

    paper: pst
    text: <file name in ../shared/papers>
    tables:
    - table: "2"                      # the paper's table number; the spec is "<paper>-table<table>"
      title: ...
      match: [method, sparsity]       # the settings that tell this table's rows apart (see SETTINGS)
      miniature: {minilm-l6: bert-base-uncased}   # our small models -> the block they are compared with
      columns: [{id, label, metric | mean_of | avg_of, task, factor, lower_is_better, kind}, ...]
      notes: [...]
      blocks:
      - model: bert-base-uncased      # or `models: [...]`: the values run over models, one column
        columns: [mnli, ...]          # this block's columns in value order (default: all, in order)
        fixed: {trainable_pct: 0.35}  # a value every row of the block shares (a caption's budget)
        rows:
        - {row: "PST 90%", settings: {method: pst, sparsity: 0.9}, values: "76.73 83.93 ...", note: ...}

`values` is the paper's row as printed: numbers separated by spaces, "-" for a blank, "x±s" for mean ± std,
a trailing "M" (millions) dropped. Loading checks every table, block and row, then expands them into entries
{paper, table, model, row, column, value[, std, note]} and checks those once more.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import ConfigError
from .columns import Column

DATA_DIR = Path(__file__).parent / "published"
ENTRY_FIELDS = {"paper": str, "table": str, "model": str, "row": str, "column": str, "value": float}
COLUMN_KEYS = {"id", "label", "metric", "mean_of", "avg_of", "task", "factor", "lower_is_better", "kind"}
TABLE_KEYS = {"table", "title", "match", "miniature", "columns", "notes", "blocks"}
BLOCK_KEYS = {"model", "models", "columns", "fixed", "rows"}
ROW_KEYS = {"row", "settings", "values", "note"}

PRUNING_METHODS = ("spp", "lora_star", "prune_only")  # prune once with salience.name, then (maybe) train
DENSE_METHODS = ("full", "lora", "pissa")             # keep every weight


def _method(run) -> dict:
    return run.config.get("method") or {}


def _nm(pattern) -> tuple[int, int] | None:
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(pattern or ""))
    return (int(m.group(1)), int(m.group(2))) if m else None


def _sparsity(run):
    m = _method(run)
    nm = _nm(m.get("pattern"))
    if m.get("sparsity") is None and nm:
        return 1.0 - nm[0] / nm[1]
    return m.get("sparsity")


def _pruner(run):
    m, sal = _method(run), (run.config.get("salience") or {}).get("name")
    if m.get("name") in PRUNING_METHODS and m.get("prune", True):
        return "none" if sal == "dense" else sal
    return "none" if m.get("name") in DENSE_METHODS else None


def _trained(run) -> bool:
    steps = (run.record.get("timing") or {}).get("steps")
    if isinstance(steps, int):
        return steps > 0
    return (run.config.get("train") or {}).get("max_steps", -1) != 0


def _spp_option(name: str, default):
    # SPP's Table 4 / 8 switches; a run recorded before the switch existed ran the default
    return lambda run: _method(run).get(name, default) if _method(run).get("name") == "spp" else None


# Every setting a published row can be matched on: name -> how to read it from one of our runs.
SETTINGS = {
    "method": lambda run: _method(run).get("name"),
    "sparsity": _sparsity,
    "pattern": lambda run: _method(run).get("pattern") or ("unstructured" if "sparsity" in _method(run) else None),
    "salience": lambda run: (run.config.get("salience") or {}).get("name"),
    "mask": lambda run: (run.config.get("mask_schedule") or {}).get("name"),
    "scope": lambda run: _method(run).get("scope"),
    "pruner": _pruner,
    "trained": _trained,
    "r": lambda run: _method(run).get("r"),
    "r1": lambda run: _method(run).get("r1"),
    "r2": lambda run: _method(run).get("r2"),
    "score_terms": lambda run: _method(run).get("score_terms"),
    "spp_w_beta": _spp_option("use_beta", True),
    "spp_zero_init": _spp_option("zero_init", "beta"),
}


def same(ours, theirs) -> bool:
    """Setting equality across YAML and results.json: numbers within 1e-6, lists as sets, text case-blind."""
    if ours is None or theirs is None:
        return False
    if isinstance(theirs, bool) or isinstance(ours, bool):
        return ours is theirs
    if isinstance(theirs, (int, float)) and isinstance(ours, (int, float)):
        return math.isclose(float(ours), float(theirs), abs_tol=1e-6)
    if isinstance(theirs, (list, tuple)) or isinstance(ours, (list, tuple)):
        as_set = lambda v: frozenset(map(str, v if isinstance(v, (list, tuple)) else [v]))  # noqa: E731
        return as_set(ours) == as_set(theirs)
    return str(ours).lower() == str(theirs).lower()


@dataclass(frozen=True)
class PubValue:
    value: float
    std: float | None = None


@dataclass
class PubRow:
    label: str
    model: str
    settings: dict
    values: dict[str, PubValue]
    note: str | None = None

    def matches(self, run) -> bool:
        return all(same(SETTINGS[name](run), want) for name, want in self.settings.items())


@dataclass
class PubTable:
    paper: str
    table: str
    title: str
    source: str
    match_on: list[str]
    miniature: dict[str, str]
    columns: list[Column]
    notes: list[str]
    rows: list[PubRow] = field(default_factory=list)

    @property
    def spec(self) -> str:
        return f"{self.paper}-table{self.table}"

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r.model for r in self.rows))

    def block_for(self, our_model: str | None) -> str:
        """The published model our runs on `our_model` are compared with."""
        if our_model in self.models:
            return our_model
        return self.miniature.get(our_model, self.models[0])

    def match(self, run) -> PubRow | None:
        model = self.block_for((run.config.get("model") or {}).get("name"))
        return next((r for r in self.rows if r.model == model and r.matches(run)), None)

    def entries(self) -> list[dict]:
        """One flat entry per published number."""
        out = []
        for r in self.rows:
            for column, v in r.values.items():
                entry = {"paper": self.paper, "table": self.table, "model": r.model, "row": r.label, "column": column,
                         "value": v.value}
                entry.update({k: x for k, x in (("std", v.std), ("note", r.note)) if x is not None})
                out.append(entry)
        return out


def parse_number(token: str, where: str) -> PubValue | None:
    """'84.72' | '83.56±.07' | '110.00M' | '2.0e7' | '-' (blank -> None)."""
    if token == "-":
        return None
    mean, _, std = token.removesuffix("M").partition("±")
    try:
        value = PubValue(float(mean), float(std) if std else None)
    except ValueError:
        raise ConfigError(f"{where}: {token!r} is not a number (use '-' for a blank, 'x±s' for mean ± std)") from None
    if not math.isfinite(value.value):
        raise ConfigError(f"{where}: {token!r} is not a finite number")
    return value


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _keys(node, allowed: set, where: str) -> None:
    _require(isinstance(node, dict), f"{where}: expected a mapping, got {type(node).__name__}")
    unknown = sorted(set(node) - allowed)
    _require(not unknown, f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _as_tuple(value) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(map(str, value)) if isinstance(value, (list, tuple)) else (str(value),)


def parse_column(node, where: str) -> Column:
    _keys(node, COLUMN_KEYS, where)
    _require(isinstance(node.get("id"), str) and node["id"], f"{where}: every column needs an `id`")
    _require(isinstance(node.get("label"), str), f"{where}: column {node['id']!r} needs a `label`")
    sources = [k for k in ("metric", "mean_of", "avg_of") if node.get(k)]
    _require(len(sources) <= 1, f"{where}: column {node['id']!r} has {sources}: give at most one source")
    at = f"{where}: column {node['id']!r}"
    _require(node.get("kind", "score") in ("score", "params"), f"{at}: kind is score | params")
    factor = node.get("factor", 1.0)
    _require(isinstance(factor, (int, float)) and not isinstance(factor, bool), f"{at}: factor must be a number")
    return Column(id=node["id"], label=node["label"], metric=_as_tuple(node.get("metric")),
                  mean_of=_as_tuple(node.get("mean_of")), avg_of=_as_tuple(node.get("avg_of")),
                  task=_as_tuple(node.get("task")), factor=float(factor),
                  lower_is_better=bool(node.get("lower_is_better", False)), kind=node.get("kind", "score"))


def parse_rows(block: dict, columns: dict[str, Column], table_where: str) -> list[PubRow]:
    many = "models" in block
    _require(many != ("model" in block), f"{table_where}: a block needs exactly one of `model` / `models`")
    models = [str(m) for m in block["models"]] if many else [str(block["model"])]
    where = f"{table_where} block {'/'.join(models)}"
    order = [str(c) for c in block.get("columns") or [c for c in columns]]
    unknown = [c for c in order if c not in columns]
    _require(not unknown, f"{where}: unknown column(s) {unknown}; the table has {list(columns)}")
    _require(not many or len(order) == 1, f"{where}: a `models` block holds one column, got {order}")
    fixed = block.get("fixed") or {}
    _require(all(c in columns for c in fixed), f"{where}: `fixed` names unknown columns {sorted(set(fixed) - set(columns))}")
    _require(isinstance(block.get("rows"), list) and block["rows"], f"{where}: `rows` must be a non-empty list")
    rows = []
    for i, node in enumerate(block["rows"]):
        _keys(node, ROW_KEYS, f"{where} row {i + 1}")
        label = node.get("row")
        _require(isinstance(label, str) and label.strip() != "", f"{where} row {i + 1}: every row needs a `row` label")
        at = f"{where} row {label!r}"
        settings = node.get("settings")
        _require(isinstance(settings, dict) and settings, f"{at}: `settings` must name what the row is (e.g. method)")
        unknown = sorted(set(settings) - set(SETTINGS))
        _require(not unknown, f"{at}: unknown setting(s) {unknown}; known: {sorted(SETTINGS)}")
        _require(isinstance(node.get("values"), (str, int, float)), f"{at}: `values` must be the printed row (a string)")
        tokens = str(node["values"]).split()
        slots = models if many else order
        what = "models" if many else "columns"
        _require(len(tokens) == len(slots), f"{at}: {len(tokens)} values for {len(slots)} {what} {slots}")
        parsed = [parse_number(t, at) for t in tokens]
        for slot, value in zip(slots, parsed):
            model = slot if many else models[0]
            values = {order[0]: value} if many else {slot: value}
            values.update({c: PubValue(float(v)) for c, v in fixed.items()})
            present = {c: v for c, v in values.items() if v is not None}
            rows.append(PubRow(label, model, dict(settings), present, node.get("note")))
    return rows


def merge_rows(rows: list[PubRow], where: str) -> list[PubRow]:
    """Rows split over blocks (models given as columns) join into one row per (model, label); no number twice."""
    merged: dict[tuple[str, str], PubRow] = {}
    for r in rows:
        key = (r.model, r.label)
        if key not in merged:
            merged[key] = r
            continue
        old = merged[key].values
        clash = sorted(c for c in r.values if c in old and old[c] != r.values[c])
        _require(not clash, f"{where}: row {r.label!r} of {r.model} gives column(s) {clash} two different values")
        _require(merged[key].settings == r.settings,
                 f"{where}: row {r.label!r} of {r.model} has different settings in two blocks")
        merged[key].values.update(r.values)
    return list(merged.values())


def parse_table(node, paper: str, source: str, text: str = "") -> PubTable:
    where = f"{source}: table {node.get('table') if isinstance(node, dict) else '?'}"
    _keys(node, TABLE_KEYS, where)
    _require(node.get("table") is not None, f"{where}: every table needs its number (`table`)")
    match = list(node.get("match") or [])
    _require(set(match) <= set(SETTINGS), f"{where}: `match` names unknown settings {sorted(set(match) - set(SETTINGS))}")
    _require(isinstance(node.get("columns"), list) and node["columns"], f"{where}: `columns` must be a non-empty list")
    columns = [parse_column(c, where) for c in node["columns"]]
    ids = [c.id for c in columns]
    _require(len(set(ids)) == len(ids), f"{where}: duplicate column ids {ids}")
    for c in columns:
        unknown = sorted(set(c.avg_of) - set(ids))
        _require(not unknown, f"{where}: column {c.id!r} averages unknown columns {unknown}")
    by_id = {c.id: c for c in columns}
    _require(isinstance(node.get("blocks"), list) and node["blocks"], f"{where}: `blocks` must be a non-empty list")
    rows = []
    for block in node["blocks"]:
        _keys(block, BLOCK_KEYS, f"{where} block")
        rows += parse_rows(block, by_id, where)
    miniature = node.get("miniature") or {}
    _require(isinstance(miniature, dict), f"{where}: `miniature` maps our model names to the paper's")
    return PubTable(paper=paper, table=str(node["table"]), title=str(node.get("title", "")), source=text or source,
                    match_on=match, miniature={str(k): str(v) for k, v in miniature.items()}, columns=columns,
                    notes=[str(n) for n in node.get("notes") or []], rows=merge_rows(rows, where))


def check_entries(entries: list[dict], source: str) -> None:
    """Every entry names paper, table, model, row, column and a finite value; no (paper, table, model, row,
    column) twice."""
    seen = set()
    for i, e in enumerate(entries):
        for name, kind in ENTRY_FIELDS.items():
            v = e.get(name)
            if kind is float:
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            else:
                ok = isinstance(v, str) and v != ""
            _require(ok, f"{source}: entry {i + 1} ({e.get('paper')} table {e.get('table')} {e.get('model')} "
                         f"{e.get('row')!r} {e.get('column')}) needs `{name}`")
        key = tuple(e[k] for k in ("paper", "table", "model", "row", "column"))
        _require(key not in seen, f"{source}: entry {key} appears twice")
        seen.add(key)


def load_file(path: Path) -> list[PubTable]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read published numbers {path}: {e}") from None
    _keys(doc, {"paper", "text", "tables"}, str(path))
    _require(isinstance(doc.get("paper"), str) and doc["paper"], f"{path}: needs `paper`")
    _require(isinstance(doc.get("tables"), list) and doc["tables"], f"{path}: needs a non-empty `tables` list")
    tables = [parse_table(t, doc["paper"], path.name, str(doc.get("text") or "")) for t in doc["tables"]]
    check_entries([e for t in tables for e in t.entries()], str(path))
    return tables


def load_published(paths: list[Path] | None = None) -> dict[str, PubTable]:
    """spec ("pst-table2") -> table, from the given files or every published/*.yaml."""
    out: dict[str, PubTable] = {}
    for path in paths or sorted(DATA_DIR.glob("*.yaml")):
        for table in load_file(Path(path)):
            _require(table.spec not in out, f"{path}: {table.spec} is defined twice")
            out[table.spec] = table
    return out


def get_table(spec: str, tables: dict[str, PubTable] | None = None) -> PubTable:
    tables = load_published() if tables is None else tables
    if spec not in tables:
        raise ConfigError(f"unknown paper table {spec!r}; known: {', '.join(sorted(tables, key=spec_order))}")
    return tables[spec]


def spec_order(spec: str) -> tuple:
    paper, _, number = spec.partition("-table")
    return (paper, int(number) if number.isdigit() else 0, number)
