"""docs/REPRODUCTION.md from the results the paper-table runs left, and nothing else.

`collect(outputs/tables, docs/results)` copies each run's results.json (and the table's reproduce.json) into the
repository; `write_report(docs/results, docs/REPRODUCTION.md)` rebuilds each table.md from those records with
the same builder as scripts/reproduce.py (so a change to the builder reaches every table) and writes, for every table
of grids.TABLES, what was run (command, date, git SHA, runtime, job statuses), the table beside the published
numbers, whether the paper's claims hold on our numbers, and a figure for the sweeps. A table without a run
is listed as not run, with its CPU grid and paper-scale cost.
"""
from __future__ import annotations

import json
import shutil
import statistics
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ..objective import harness_accuracy
from .build import SHORT_NAMES
from .columns import lookup
from .grids import TABLES
from .reproduce import ROOT, build_table, expand


# ---- collecting ---------------------------------------------------------------------------------
def collect(outputs: Path, dest: Path) -> list[str]:
    """Copy every table's records (results.json of each job, reproduce.json, table.md) from outputs into dest,
    replacing the earlier copy of those; an analysis kept beside them (notes.md, diagnostics/) stays."""
    copied = []
    for manifest in sorted(outputs.glob("*/*/reproduce.json")):
        src, out = manifest.parent, dest / manifest.parent.relative_to(outputs)
        shutil.rmtree(out / "runs", ignore_errors=True)  # notes.md and diagnostics/ beside it are a person's: kept
        out.mkdir(parents=True, exist_ok=True)
        for name in ("reproduce.json", "table.md"):
            if (src / name).exists():
                shutil.copy2(src / name, out / name)
        for rec in sorted((src / "runs").glob("*/results.json")):
            (out / "runs" / rec.parent.name).mkdir(parents=True)
            shutil.copy2(rec, out / "runs" / rec.parent.name / "results.json")
        copied.append(str(out))
    return copied


# ---- scores the claims are checked on ---------------------------------------------------------------
def main_score(rec: dict) -> float | None:
    """The task's reported metric (x100) for GLUE-style records; the lm-eval accuracy average for LLM ones."""
    if (rec.get("metrics") or {}).get("harness"):
        acc = harness_accuracy(rec)
        return 100 * acc if acc is not None else None
    metric = str((rec.get("config") or {}).get("task", {}).get("main_metric"))
    if metric.startswith("generation."):  # BLEU, METEOR ...: recorded on the papers' 0-100 scale already
        return lookup(rec, f"metrics.{metric}")
    value = lookup(rec, f"metrics.eval.{metric}")
    value = value if value is not None else lookup(rec, f"metrics.{metric}")  # e.g. gsm8k.flexible_extract
    return 100 * value if value is not None else None


def perplexity(rec: dict) -> float | None:
    p = ((rec.get("metrics") or {}).get("perplexity") or {}).get("perplexity")
    return p if isinstance(p, (int, float)) else None


def setting(rec: dict) -> dict:
    c = rec.get("config") or {}
    m = c.get("method") or {}
    return {"method": m.get("name"), "sparsity": (rec.get("sparsity") or {}).get("target"), "pattern": m.get("pattern"),
            "salience": (c.get("salience") or {}).get("name"), "trained": (rec.get("timing") or {}).get("steps", 0) > 0,
            "task": (c.get("task") or {}).get("name"), "schedule": (c.get("mask_schedule") or {}).get("name"),
            "scope": m.get("scope"), "r": m.get("r"), "zero_init": m.get("zero_init"), "use_beta": m.get("use_beta"),
            "score_terms": tuple(m.get("score_terms") or ()) or None}


def best_of_search(records: list[dict], searched: str | None) -> list[dict]:
    """Where the grid searched settings (e.g. "lr"), keep per setting and task only the records of the searched
    point with the best mean dev score, as the table builder does: claims and figures then compare each
    method at its own best point, never an average over the search."""
    if not searched:
        return records
    paths = [SHORT_NAMES.get(n, n) for n in searched.split(",")]
    groups: dict = defaultdict(lambda: defaultdict(list))
    for r in records:
        point = tuple(lookup(r, f"config.{p}") for p in paths)
        groups[tuple(sorted((k, str(v)) for k, v in setting(r).items()))][point].append(r)
    kept = []
    for points in groups.values():
        scored = [(statistics.fmean(v), p) for p, rs in points.items()
                  if (v := [x for x in map(main_score, rs) if x is not None])]
        if scored:
            kept += points[max(scored, key=lambda s: s[0])[1]]
    return kept


def per_task(records: list[dict], keep: Callable[[dict], bool], value=main_score) -> dict[str, float]:
    """Per task, the mean over seeds of `value` for the records `keep` selects."""
    out = defaultdict(list)
    for r in records:
        v = value(r)
        if keep(setting(r)) and v is not None:
            out[setting(r)["task"]].append(v)
    return {t: statistics.fmean(v) for t, v in out.items()}


def mean_over(records: list[dict], keep: Callable[[dict], bool], value=main_score, tasks=None) -> float | None:
    """Mean over tasks (all, or `tasks`) of the per-task means."""
    scores = per_task(records, keep, value)
    used = [scores[t] for t in scores if tasks is None or t in tasks]
    return statistics.fmean(used) if used else None


def at(method=None, sparsity=None, **kw) -> Callable[[dict], bool]:
    def keep(s: dict) -> bool:
        if method is not None and s["method"] != method:
            return False
        if sparsity is not None and (s["sparsity"] is None or abs(s["sparsity"] - sparsity) > 1e-6):
            return False
        return all(s.get(k) == v for k, v in kw.items())
    return keep


def claim(text: str, records: list[dict], side: Callable[[dict], bool], other: Callable[[dict], bool], value=main_score,
          higher_is_better: bool = True) -> tuple:
    """(claim, holds, detail): the paper says `side` scores >= `other` (<= for perplexity), on the tasks both ran."""
    common = set(per_task(records, side, value)) & set(per_task(records, other, value))
    if not common:
        return text, None, "not measured in this run"
    ours, theirs = mean_over(records, side, value, common), mean_over(records, other, value, common)
    holds = ours >= theirs if higher_is_better else ours <= theirs
    return text, holds, f"{ours:.2f} vs {theirs:.2f} over {len(common)} task(s)"


def spp_vs_lora_star(rs: list[dict], pattern: str) -> list[tuple]:
    """SPP Table 5 at one pattern: Wanda + SPP against Wanda + LoRA* (both trained, same budget)."""
    spp, lora = at("spp", salience="wanda", trained=True, pattern=pattern), at("lora_star", pattern=pattern)
    return [claim(f"Wanda + SPP >= Wanda + LoRA* ({pattern}, LM-eval)", rs, spp, lora),
            claim(f"Wanda + SPP perplexity <= Wanda + LoRA*'s ({pattern})", rs, spp, lora, perplexity,
                  higher_is_better=False)]


def speft_vs_baselines(rs: list[dict]) -> list[tuple]:
    """SPEFT's headline (Tables 1-3): gradient salience ahead of magnitude, and of LoRA at the same budget."""
    gradient = at("speft", salience="gradient")
    return [claim("gradient salience >= magnitude salience", rs, gradient, at("speft", salience="magnitude")),
            claim("gradient SPEFT >= LoRA at equal budget", rs, gradient, at("lora"))]


def spp_recovers(rs: list[dict], patterns: tuple[str, ...], perplexity_too: bool) -> list[tuple]:
    """SPP trained after one-shot pruning against the same pruned model untrained, per pruner and pattern."""
    pairs = [(p, pat, at("spp", salience=p, pattern=pat, trained=True), at("spp", salience=p, pattern=pat, trained=False))
             for p in ("wanda", "sparsegpt") for pat in patterns]
    return [claim(f"SPP recovers accuracy after {p} {pat} pruning", rs, trained, pruned)
            for p, pat, trained, pruned in pairs] + [
        claim(f"SPP lowers WikiText-2 perplexity after {p} {pat}", rs, trained, pruned, perplexity, higher_is_better=False)
        for p, pat, trained, pruned in pairs if perplexity_too]


PST_TERMS = ("magnitude", "lowrank", "structured")  # S = |W0 + βUV| + α1·AB + α2·(R + C)
CLAIMS: dict[str, Callable[[list[dict]], list[tuple]]] = {
    "pst-table2": lambda rs: [
        claim("PST >= MaP at 90 % (GLUE average)", rs, at("pst", 0.9), at("magnitude", 0.9)),
        claim("PST >= MvP at 90 %", rs, at("pst", 0.9), at("movement", 0.9)),
        claim("PST >= MaP at 50 %", rs, at("pst", 0.5), at("magnitude", 0.5)),
        claim("full FT >= PST at 90 % (the dense upper bound)", rs, at("full"), at("pst", 0.9)),
    ],
    "pst-table3": lambda rs: [
        claim("PST >= MaP at 90 % (BLEU)", rs, at("pst", 0.9), at("magnitude", 0.9)),
        claim("PST >= MvP at 90 % (BLEU)", rs, at("pst", 0.9), at("movement", 0.9)),
        claim("full FT >= PST at 90 % (BLEU, the dense upper bound)", rs, at("full"), at("pst", 0.9)),
    ],
    "pst-table5": lambda rs: [
        claim(f"the full score >= {name} alone", rs, at("pst", 0.9, score_terms=PST_TERMS), at("pst", 0.9, score_terms=terms))
        for name, terms in (("|W0+βUV|", ("magnitude",)), ("α1·AB", ("lowrank",)), ("α2·(R+C)", ("structured",)))
    ],
    "pst-figure3": lambda rs: [
        claim("PST >= MaP at the highest sparsity", rs, at("pst", 0.95), at("magnitude", 0.95)),
    ],
    "speft-table1": speft_vs_baselines,
    "speft-table2": speft_vs_baselines,
    "speft-table3": lambda rs: [
        *speft_vs_baselines(rs),
        claim("gradient SPEFT >= the pretrained model", rs, at("speft", salience="gradient"), at("full", trained=False)),
    ],
    "speft-table4": lambda rs: [
        claim("static >= dynamic masks (global)", rs, at("speft", schedule="static", scope="global"),
              at("speft", schedule="dynamic", scope="global")),
    ],
    **{name: (lambda rs: spp_recovers(rs, ("unstructured", "2:4", "2:8"), perplexity_too=True))
       for name in ("spp-table2", "spp-table3")},
    "spp-table6": lambda rs: spp_recovers(rs, ("unstructured", "2:4"), perplexity_too=False),
    "spp-table5": lambda rs: [c for pat in ("unstructured", "2:8") for c in spp_vs_lora_star(rs, pat)],
    "spp-figure1": lambda rs: [c for pat in ("unstructured", "2:8") for c in [
        *spp_vs_lora_star(rs, pat),
        claim(f"Wanda + SPP >= Wanda + DSnoT ({pat}, LM-eval)", rs, at("spp", salience="wanda", trained=True, pattern=pat),
              at("spp", salience="dsnot", trained=False, pattern=pat)),
        claim(f"Wanda + DSnoT perplexity <= Wanda's ({pat}: training-free refinement helps)", rs,
              at("spp", salience="dsnot", trained=False, pattern=pat), at("spp", salience="wanda", trained=False, pattern=pat),
              perplexity, higher_is_better=False),
    ]],
}


# ---- figures --------------------------------------------------------------------------------------
def sparsity_figure(records: list[dict], out: Path) -> Path | None:
    """Accuracy vs sparsity, one line per sparse method (PST Fig. 3)."""
    series = defaultdict(dict)
    points = {(s["method"], s["sparsity"]) for s in map(setting, records) if s["sparsity"]}
    for method, sparsity in points:  # each point once, not once per record behind it
        v = mean_over(records, at(method, sparsity))
        if v is not None:
            series[method][100 * sparsity] = v
    return _lines(series, out, "sparsity (%)", "dev score, mean over tasks")


def budget_figure(records: list[dict], out: Path) -> Path | None:
    """Score vs trainable parameters (% of the model), one line per method (SPEFT Fig. 2)."""
    points = defaultdict(lambda: defaultdict(list))
    for r in records:
        pct, score = lookup(r, "params.trainable_without_head_percent"), main_score(r)
        if pct is not None and score is not None:
            s = setting(r)
            points[s["method"] + (f" ({s['salience']})" if s["method"] == "speft" else "")][round(pct, 4)].append(score)
    return _lines({m: {x: statistics.fmean(v) for x, v in p.items()} for m, p in points.items()}, out,
                  "trainable parameters (% of the model)", "dev score, mean over tasks", log_x=True)


def perplexity_figure(records: list[dict], out: Path) -> Path | None:
    """WikiText-2 perplexity vs unstructured sparsity, one line per pruner, pruned only and + SPP; the dense
    model is every line's 0 % point (SPP Tables 2 and 3 together give 0, 50 and 75 %)."""
    dense = [p for r in records if setting(r)["method"] == "full" and (p := perplexity(r)) is not None]
    series = defaultdict(dict)
    for r in records:
        s, ppl = setting(r), perplexity(r)
        if s["method"] == "spp" and s["pattern"] == "unstructured" and s["sparsity"] and ppl is not None:
            series[f"{s['salience']}{' + SPP' if s['trained'] else ' (pruned only)'}"][100 * s["sparsity"]] = ppl
    for line in series.values():
        if dense:
            line[0.0] = statistics.fmean(dense)
    return _lines(series, out, "unstructured sparsity (%)", "WikiText-2 perplexity", log_y=True)


def figure1_label(s: dict) -> str | None:
    """SPP Figure 1's four bars: what was done after (or instead of) training."""
    if s["method"] == "lora_star":
        return "Wanda+LoRA*"
    if s["method"] == "spp":
        return {("wanda", False): "Wanda", ("dsnot", False): "Wanda+DSnoT", ("wanda", True): "Wanda+SPP"}.get(
            (s["salience"], s["trained"]))
    return None


def pruning_methods_figure(records: list[dict], out: Path) -> Path | None:
    """SPP Fig. 1: LM-eval score (and WikiText-2 perplexity) of Wanda / +DSnoT / +LoRA* / +SPP per pattern."""
    bars: dict = defaultdict(lambda: defaultdict(dict))  # panel -> pattern -> label -> value
    for r in records:
        s, label = setting(r), figure1_label(setting(r))
        pattern = "unstructured 75 %" if s["pattern"] == "unstructured" else str(s["pattern"])
        for panel, value in (("LM-eval score", main_score(r)), ("WikiText-2 perplexity", perplexity(r))):
            if label and value is not None:
                bars[panel][pattern][label] = value
    if not bars:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = ["Wanda", "Wanda+DSnoT", "Wanda+LoRA*", "Wanda+SPP"]
    fig, axes = plt.subplots(1, len(bars), figsize=(5 * len(bars), 3.5))
    for ax, (panel, groups) in zip(axes if len(bars) > 1 else [axes], sorted(bars.items())):
        patterns = sorted(groups)
        width = 0.8 / len(order)
        for i, label in enumerate(order):
            xs = [p + i * width for p, pat in enumerate(patterns) if label in groups[pat]]
            ys = [groups[pat][label] for pat in patterns if label in groups[pat]]
            ax.bar(xs, ys, width, label=label)
        ax.set_xticks([p + 0.4 - width / 2 for p in range(len(patterns))], patterns)
        ax.set_ylabel(panel)
        if "perplexity" in panel:
            ax.set_yscale("log")
        ax.grid(alpha=0.3, axis="y")
    axes_list = axes if len(bars) > 1 else [axes]
    axes_list[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _lines(series: dict, out: Path, xlabel: str, ylabel: str, log_x: bool = False, log_y: bool = False) -> Path | None:
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, pts in sorted(series.items()):
        xs = sorted(pts)
        ax.plot(xs, [pts[x] for x in xs], marker="o", label=name)
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


FIGURES = {"pst-figure3": sparsity_figure, "pst-table2": sparsity_figure, "speft-figure2": budget_figure,
           "spp-table3": perplexity_figure, "spp-figure1": pruning_methods_figure}
# figures drawn from a table's exported models by another target (they need the models, which are not committed)
MODEL_FIGURES = {"pst-figure3": ("pst-figure45", "make pst-figure45", "PST Fig. 4 (kept weights) and Fig. 5 (mask "
                                 "similarity 1 - Hamming / n per layer) of the 90 % runs, each at its best lr")}
# a figure drawn from several tables' records (its own table's first)
FIGURE_SOURCES = {"spp-table3": ("spp-table3", "spp-table2")}


# ---- the report -----------------------------------------------------------------------------------
def load_records(table_dir: Path) -> list[dict]:
    recs = []
    for f in sorted(table_dir.glob("runs/*/results.json")):
        rec = json.loads(f.read_text())
        if rec.get("status") == "completed":
            recs.append(rec)
    return recs


def model_figures(figures: Path, doc_dir: Path, subdir: str, command: str, caption: str) -> list[str]:
    """The PNGs `command` left under figures/subdir, with the mean mask similarity of each pair."""
    pngs = sorted((figures / subdir).glob("*.png"))
    if not pngs:
        return [f"({caption}: not drawn yet; `{command}` after this table's runs)", ""]
    lines = [f"{caption} (`{command}`):", ""]
    lines += [f"![{p.stem}]({p.relative_to(doc_dir).as_posix()})" for p in pngs]
    sims = figures / subdir / "fig5_mask_similarity.json"
    if sims.exists():
        means = json.loads(sims.read_text()).get("pair_means", {})
        lines += ["", *(f"- {pair}: mean mask similarity {m['hamming_similarity']:.4f} (independent masks: "
                        f"{m['chance_similarity']:.4f})" for pair, m in means.items())]
    return lines + [""]


def table_records(results: Path, name: str) -> list[dict]:
    """A table's completed CPU-scale records, each setting at its best searched point where the grid searched."""
    spec = TABLES[name]
    return best_of_search(load_records(results / name / "cpu"), spec.cpu.select_best if spec.cpu else None)


def _when(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z")


def run_provenance(runs_dir: Path) -> str | None:
    """When, at which commits and for how long the completed runs behind a table ran, from their own results.json
    (the manifest only knows its last invocation, which may just have reused them)."""
    made = []
    for path in sorted(runs_dir.glob("*/results.json")):
        r = json.loads(path.read_text())
        started, ended = (r.get("process") or {}).get("started"), r.get("ended")
        if r.get("status") == "completed" and started and ended:
            made.append((_when(started), _when(ended), ((r.get("env") or {}).get("git_sha") or "unknown")[:7]))
    if not made:
        return None
    first, last = min(m[0] for m in made), max(m[1] for m in made)
    minutes = sum((end - start).total_seconds() for start, end, _ in made) / 60
    shas = sorted({m[2] for m in made})
    return (f"{len(made)} completed run(s) made between {first:%Y-%m-%d %H:%M} and {last:%Y-%m-%d %H:%M} UTC at git "
            f"{', '.join(shas)}; {minutes:.0f} min of job time in all")


def section(name: str, results: Path, figures: Path, doc_dir: Path) -> list[str]:
    spec = TABLES[name]
    lines = [f"## {name}: {spec.title}", ""]
    table_dir = results / name / "cpu"
    manifest_path = table_dir / "reproduce.json"
    if not manifest_path.exists():
        if spec.cpu is None:
            lines += [f"**No CPU miniature**: {spec.missing}. Paper scale: `make {name} SCALE=paper` ({spec.cost}).", ""]
        else:
            lines += [f"**Not run yet at CPU scale.** `make {name}` runs {len(expand(spec.cpu, 'DATA'))} jobs "
                      f"({spec.cpu.note}). Paper scale: `make {name} SCALE=paper` ({spec.cost}).", ""]
        return lines
    m = json.loads(manifest_path.read_text())
    statuses = defaultdict(int)
    for j in m["jobs"]:
        statuses[j["status"]] += 1
    reused = sum(1 for j in m["jobs"] if j.get("reused"))
    made = run_provenance(table_dir / "runs")
    lines += [f"- command: `{m['command']}` (last invoked at git {m['git_sha']}, started {m['started']}, "
              f"{m['seconds'] / 60:.0f} min wall "
              f"for {len(m['jobs'])} jobs: {', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))}"
              f"{f'; {reused} of them completed by an earlier run of the same job and reused' if reused else ''})",
              *([f"- runs: {made}"] if made else []),
              *([f"- incomplete: {statuses['not run']} job(s) not started within the run's time budget "
                 f"(--budget-minutes {m.get('budget_minutes')}); their rows are missing below, and the same command "
                 "finishes the table"] if statuses.get("not run") else []),
              f"- scale: CPU miniature — {m.get('note') or spec.cpu.note}",
              f"- paper scale: `make {name} SCALE=paper` ({spec.cost})",
              f"- records: `{table_dir.relative_to(doc_dir.parent)}/runs/*/results.json`", ""]
    searched = spec.cpu.select_best if spec.cpu else None
    records = table_records(results, name)
    if searched:
        lines += [f"Claims and figure use each setting's best {searched} per task (by the task's main dev metric), "
                  "as the table below does.", ""]
    checks = CLAIMS.get(name, lambda rs: [])(records)
    measured = [c for c in checks if c[1] is not None]
    if measured:
        lines += ["**The paper's claims on these numbers:**", ""]
        lines += [f"- {text}: {'holds' if holds else '**does not hold**'} ({detail})" for text, holds, detail in measured]
        lines.append("")
    make_figure = FIGURES.get(name)
    if make_figure and records:
        drawn = [r for t in FIGURE_SOURCES.get(name, (name,)) for r in table_records(results, t)]
        fig = make_figure(drawn, figures / f"{name}.png")
        if fig is not None:
            lines += [f"![{name}]({fig.relative_to(doc_dir).as_posix()})", ""]
    if name in MODEL_FIGURES:
        lines += model_figures(figures, doc_dir, *MODEL_FIGURES[name])
    notes = table_dir / "notes.md"  # the analysis of a claim that does not hold: written by a person, citing records
    if notes.exists():
        lines += ["**What we think, and what we measured:**", "", notes.read_text().strip(), ""]
    runs = (table_dir / "runs").resolve()  # repository-relative when inside it: the report reads the same anywhere
    table = build_table(name, spec.cpu, runs.relative_to(ROOT) if runs.is_relative_to(ROOT) else runs)
    (table_dir / "table.md").write_text(table)
    lines += [table.strip(), ""]
    return lines


def write_report(results: Path, out: Path) -> Path:
    figures = out.parent / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    lines = ["# Reproduction report", "",
             "Generated by `python scripts/reproduction_report.py` from the `results.json` files under "
             f"`{results.relative_to(out.parent.parent) if results.is_relative_to(out.parent.parent) else results}` "
             "(nothing here is typed by hand). Each section: the command that produced it, the claims of the paper "
             "checked on our numbers, and the table beside the published numbers (the published rows are the paper's "
             "models at full scale; ours are CPU miniatures unless the section says otherwise, so the differences "
             "measure scale as much as method).", ""]
    for name in TABLES:
        lines += section(name, results, figures, out.parent)
    out.write_text("\n".join(lines))
    return out
