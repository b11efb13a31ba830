"""docs/REPRODUCTION.md is generated from results.json files alone: commands, claims, figures, tables not run."""
from __future__ import annotations

import json

from sparsetune.tables.grids import TABLES
from sparsetune.tables.report import best_of_search, collect, write_report


def rec(method, sparsity, task, acc, steps=100, lr=None):
    return {"status": "completed", "config": {"method": {"name": method}, "salience": {"name": "magnitude"},
                                              "train": {"lr": lr},
                                              "task": {"name": task, "main_metric": "accuracy"}, "mask_schedule": {"name": "cubic"}},
            "metrics": {"eval": {"accuracy": acc}}, "sparsity": {"target": sparsity}, "timing": {"steps": steps},
            "params": {"trainable_without_head_percent": 1.0}}


def write_table_dir(root, table, records):
    d = root / table / "cpu"
    for i, r in enumerate(records):
        (d / "runs" / f"job{i}").mkdir(parents=True)
        (d / "runs" / f"job{i}" / "results.json").write_text(json.dumps(r))
    (d / "reproduce.json").write_text(json.dumps({
        "command": f"make {table} SCALE=cpu DATA=/data", "git_sha": "abc1234", "started": "2026-12-02T06:00:00+0000",
        "seconds": 1800, "note": "test miniature", "jobs": [{"status": "completed"}] * len(records)}))
    (d / "table.md").write_text("| row | sst2 |\n|---|---|\n| pst | 80.00 |\n")


def test_report_states_commands_claims_figures_and_what_was_not_run(tmp_path):
    outputs, results, doc = tmp_path / "outputs", tmp_path / "docs" / "results", tmp_path / "docs" / "REPRODUCTION.md"
    t2 = [rec("pst", 0.9, "sst2", 0.80), rec("magnitude", 0.9, "sst2", 0.70), rec("movement", 0.9, "sst2", 0.85),
          rec("full", 0.0, "sst2", 0.90), rec("pst", 0.9, "rte", 0.60), rec("magnitude", 0.9, "rte", 0.55),
          rec("movement", 0.9, "rte", 0.50)]
    write_table_dir(outputs, "pst-table2", t2)
    fig3 = [rec(m, s, "sst2", a) for m, s, a in (("pst", 0.5, 0.85), ("pst", 0.95, 0.7), ("magnitude", 0.5, 0.84),
                                                  ("magnitude", 0.95, 0.6))]
    write_table_dir(outputs, "pst-figure3", fig3)
    (results / "pst-table2" / "cpu").mkdir(parents=True)
    (results / "pst-table2" / "cpu" / "notes.md").write_text("MvP's score lr collapses it here.")
    assert len(collect(outputs, results)) == 2
    assert len(list(results.glob("pst-table2/cpu/runs/*/results.json"))) == len(t2)
    text = write_report(results, doc).read_text()
    sec = text[text.index("## pst-table2"):text.index("## pst-table4")]
    assert "`make pst-table2 SCALE=cpu DATA=/data` (last invoked at git abc1234" in sec
    assert "30 min wall for 7 jobs" in sec
    # PST 90 %: (80 + 60) / 2 = 70 vs MaP (70 + 55) / 2 = 62.5 -> holds; vs MvP (85 + 50) / 2 = 67.5 -> holds
    assert "PST >= MaP at 90 % (GLUE average): holds (70.00 vs 62.50 over 2 task(s))" in sec
    assert "PST >= MvP at 90 %: holds (70.00 vs 67.50 over 2 task(s))" in sec
    # full ran on sst2 only: compared on the tasks both ran
    assert "full FT >= PST at 90 % (the dense upper bound): holds (90.00 vs 80.00 over 1 task(s))" in sec
    assert "PST >= MaP at 50 %" not in sec  # not measured: not claimed either way
    assert "| pst | 80.00 |" not in sec  # table.md is rebuilt from the records, not copied
    pst_row = next(line for line in sec.splitlines() if line.startswith("| pst |"))
    assert "80.00 (n=1)" in pst_row and "60.00 (n=1)" in pst_row
    assert "**What we think, and what we measured:**\n\nMvP's score lr collapses it here." in sec  # kept by collect
    assert (doc.parent / "figures" / "pst-figure3.png").stat().st_size > 1000
    assert "![pst-figure3](figures/pst-figure3.png)" in text
    for name in TABLES:
        if name not in ("pst-table2", "pst-figure3"):
            assert f"## {name}:" in text
    assert "**Not run yet at CPU scale.** `make speft-table1`" in text
    assert "**No CPU miniature**: the CPU miniature is speft-table1's" in text  # speft-table9


def test_claims_compare_each_setting_at_its_best_searched_lr(tmp_path):
    # PST is best at 5e-4, MaP at 1e-4: each is compared at its own best point, never at the search's average
    records = [rec("pst", 0.9, "sst2", 0.53, lr=1e-4), rec("pst", 0.9, "sst2", 0.76, lr=5e-4),
               rec("magnitude", 0.9, "sst2", 0.63, lr=1e-4), rec("magnitude", 0.9, "sst2", 0.60, lr=5e-4),
               rec("pst", 0.9, "mrpc", 0.81, lr=1e-4), rec("pst", 0.9, "mrpc", 0.80, lr=5e-4)]
    kept = best_of_search(records, "lr")
    assert sorted((r["config"]["method"]["name"], r["config"]["task"]["name"], r["config"]["train"]["lr"]) for r in kept) == [
        ("magnitude", "sst2", 1e-4), ("pst", "mrpc", 1e-4), ("pst", "sst2", 5e-4)]
    assert best_of_search(records, None) == records
    outputs, results, doc = tmp_path / "outputs", tmp_path / "results", tmp_path / "docs" / "REPRODUCTION.md"
    write_table_dir(outputs, "pst-table2", records)  # pst-table2's CPU grid searches lr
    collect(outputs, results)
    text = write_report(results, doc).read_text()
    assert "PST >= MaP at 90 % (GLUE average): holds (76.00 vs 63.00 over 1 task(s))" in text
    assert "incomplete" not in text
    assert "best lr per task" in text


def spp_rec(method, pruner, sparsity, ppl, trained):
    return {"status": "completed", "config": {"method": {"name": method, "pattern": "unstructured"},
                                              "salience": {"name": pruner}, "task": {"name": "alpaca"}},
            "metrics": {"perplexity": {"perplexity": ppl}, "harness": {"rte": {"acc": 0.5}}},
            "sparsity": {"target": sparsity}, "timing": {"steps": 40 if trained else 0}}


def test_perplexity_figure_draws_spp_tables_2_and_3_together(tmp_path, monkeypatch):
    from sparsetune.tables import report

    drawn = {}
    monkeypatch.setattr(report, "_lines", lambda series, out, *a, **k: drawn.update(series) or None)
    outputs, results = tmp_path / "outputs", tmp_path / "results"
    write_table_dir(outputs, "spp-table2", [spp_rec("full", "wanda", None, 20.0, False),
                                            spp_rec("spp", "wanda", 0.5, 30.0, False), spp_rec("spp", "wanda", 0.5, 25.0, True)])
    write_table_dir(outputs, "spp-table3", [spp_rec("spp", "wanda", 0.75, 300.0, False), spp_rec("spp", "wanda", 0.75, 90.0, True)])
    collect(outputs, results)
    text = write_report(results, tmp_path / "docs" / "REPRODUCTION.md").read_text()
    # each line: the dense model at 0 %, then 50 % from Table 2 and 75 % from Table 3
    assert drawn == {"wanda (pruned only)": {0.0: 20.0, 50.0: 30.0, 75.0: 300.0}, "wanda + SPP": {0.0: 20.0, 50.0: 25.0, 75.0: 90.0}}
    assert "SPP lowers WikiText-2 perplexity after wanda unstructured: holds (90.00 vs 300.00 over 1 task(s))" in text


def test_spp_figure1_bars_and_claims(tmp_path):
    def r(method, pruner, trained, acc, ppl):
        rec = spp_rec(method, pruner, 0.75, ppl, trained)
        rec["metrics"]["harness"] = {"rte": {"acc": acc}}
        return rec

    outputs, results, doc = tmp_path / "outputs", tmp_path / "results", tmp_path / "docs" / "REPRODUCTION.md"
    write_table_dir(outputs, "spp-figure1", [r("spp", "wanda", False, 0.30, 900.0), r("spp", "dsnot", False, 0.31, 700.0),
                                             r("lora_star", "wanda", True, 0.35, 80.0), r("spp", "wanda", True, 0.40, 40.0)])
    collect(outputs, results)
    text = write_report(results, doc).read_text()
    sec = text[text.index("## spp-figure1"):]
    assert "Wanda + SPP >= Wanda + LoRA* (unstructured, LM-eval): holds (40.00 vs 35.00" in sec
    assert "Wanda + SPP perplexity <= Wanda + LoRA*'s (unstructured): holds (40.00 vs 80.00" in sec
    assert "Wanda + SPP >= Wanda + DSnoT (unstructured, LM-eval): holds (40.00 vs 31.00" in sec
    assert "Wanda + DSnoT perplexity <= Wanda's (unstructured: training-free refinement helps): holds (700.00 vs 900.00" in sec
    assert "(2:8" not in sec  # no 2:8 run: not claimed either way
    assert (doc.parent / "figures" / "spp-figure1.png").stat().st_size > 1000


def test_a_table_stopped_by_its_time_budget_says_so(tmp_path):
    import json

    outputs, results, doc = tmp_path / "outputs", tmp_path / "results", tmp_path / "docs" / "REPRODUCTION.md"
    write_table_dir(outputs, "pst-table4", [rec("pst", 0.9, "sst2", 0.7)])
    manifest = outputs / "pst-table4" / "cpu" / "reproduce.json"
    m = json.loads(manifest.read_text())
    m.update(budget_minutes=60, jobs=[{"status": "completed", "reused": True}, {"status": "not run"}, {"status": "not run"}])
    manifest.write_text(json.dumps(m))
    collect(outputs, results)
    text = write_report(results, doc).read_text()
    assert "for 3 jobs: 1 completed, 2 not run; 1 of them completed by an earlier run of the same job and reused)" in text
    assert "- incomplete: 2 job(s) not started within the run's time budget (--budget-minutes 60)" in text


def test_the_report_dates_the_runs_from_their_own_records(tmp_path):
    outputs, results, doc = tmp_path / "outputs", tmp_path / "results", tmp_path / "docs" / "REPRODUCTION.md"
    made = [("2026-12-02T10:00:00+0000", "2026-12-02T10:20:00+0000", "1111111aaaa"),
            ("2026-12-03T09:00:00+0000", "2026-12-03T09:10:30+0000", "2222222bbbb")]
    records = [{**rec("pst", 0.9, "sst2", 0.7), "process": {"started": a}, "ended": b, "env": {"git_sha": sha}}
               for a, b, sha in made]
    write_table_dir(outputs, "pst-table4", [*records, {**rec("pst", 0.9, "rte", 0.6), "status": "failed"}])
    collect(outputs, results)
    text = write_report(results, doc).read_text()
    assert ("- runs: 2 completed run(s) made between 2026-12-02 10:00 and 2026-12-03 09:10 UTC at git 1111111, "
            "2222222; 30 min of job time in all") in text


def test_pst_nlg_and_ablation_claims(tmp_path):
    """pst-table3 compares BLEU as recorded (0-100 already, not x100); pst-table5 the full score to each term alone."""
    def nlg(method, bleu):
        r = rec(method, 0.9 if method != "full" else None, "e2e", None)
        r["config"]["task"]["main_metric"] = "generation.BLEU"
        r["metrics"] = {"eval": {"loss": 2.5}, "generation": {"BLEU": bleu, "METEOR": 40.0}}
        return r

    def ablation(terms, acc):
        r = rec("pst", 0.9, "sst2", acc)
        r["config"]["method"]["score_terms"] = list(terms)
        return r

    outputs, results = tmp_path / "outputs", tmp_path / "results"
    write_table_dir(outputs, "pst-table3", [nlg("full", 61.2), nlg("magnitude", 0.0), nlg("movement", 0.1), nlg("pst", 55.0)])
    write_table_dir(outputs, "pst-table5", [ablation(("magnitude", "lowrank", "structured"), 0.54),
                                            ablation(("magnitude",), 0.76), ablation(("lowrank",), 0.53)])
    collect(outputs, results)
    text = write_report(results, tmp_path / "docs" / "REPRODUCTION.md").read_text()
    assert "PST >= MaP at 90 % (BLEU): holds (55.00 vs 0.00 over 1 task(s))" in text
    assert "full FT >= PST at 90 % (BLEU, the dense upper bound): holds (61.20 vs 55.00 over 1 task(s))" in text
    assert "the full score >= |W0+βUV| alone: **does not hold** (54.00 vs 76.00 over 1 task(s))" in text
    assert "the full score >= α1·AB alone: holds (54.00 vs 53.00 over 1 task(s))" in text
    assert "α2·(R+C) alone" not in text  # not run: not claimed either way


def test_gsm8k_and_mmlu_table_claims(tmp_path):
    def gsm8k(method, flexible, salience="magnitude", steps=40):
        r = rec(method, None, "gsm8k", None, steps=steps)
        r["config"]["salience"]["name"] = salience
        r["config"]["task"]["main_metric"] = "gsm8k.flexible_extract"
        r["metrics"] = {"gsm8k": {"flexible_extract": flexible, "strict_match": 0.0}}
        return r

    def mmlu(salience, acc, steps):
        r = rec("spp", 0.5, "alpaca", None, steps=steps)
        r["config"]["salience"]["name"] = salience
        r["config"]["method"]["pattern"] = "unstructured"
        r["metrics"] = {"harness": {"mmlu": {"acc": acc}}}
        return r

    outputs, results = tmp_path / "outputs", tmp_path / "results"
    write_table_dir(outputs, "speft-table3", [gsm8k("full", 0.05, steps=0), gsm8k("speft", 0.10, "gradient"),
                                              gsm8k("speft", 0.15), gsm8k("lora", 0.10)])
    write_table_dir(outputs, "spp-table6", [mmlu("wanda", 0.26, 40), mmlu("wanda", 0.24, 0)])
    collect(outputs, results)
    text = write_report(results, tmp_path / "docs" / "REPRODUCTION.md").read_text()
    assert "gradient SPEFT >= the pretrained model: holds (10.00 vs 5.00 over 1 task(s))" in text
    assert "gradient salience >= magnitude salience: **does not hold** (10.00 vs 15.00 over 1 task(s))" in text
    assert "gradient SPEFT >= LoRA at equal budget: holds (10.00 vs 10.00 over 1 task(s))" in text
    sec = text[text.index("## spp-table6"):]
    assert "SPP recovers accuracy after wanda unstructured pruning: holds (26.00 vs 24.00 over 1 task(s))" in sec
    assert "perplexity" not in sec.split("## spp-table7")[0].lower().split("claims")[-1]  # MMLU only: no perplexity claim
