"""Tables from results.json files only (records written here by hand, in the layout run() writes), and the
published numbers they are printed beside."""
import json
import re
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import make_table  # noqa: E402

from sparsetune.errors import ConfigError  # noqa: E402
from sparsetune.tables.build import build_table  # noqa: E402
from sparsetune.tables.published import DATA_DIR, check_entries, load_file, load_published  # noqa: E402
from sparsetune.tables.runs import load_runs  # noqa: E402

PAPERS = Path(__file__).resolve().parents[2] / "shared" / "papers"
PST = {"sparsity": 0.9, "r1": 8, "r2": 8, "score_terms": ["magnitude", "lowrank", "structured"]}
GLUE_METRIC = {"sst2": "accuracy", "rte": "accuracy", "mrpc": "f1", "cola": "matthews_correlation", "stsb": "pearson"}


def record(method="pst", task="sst2", seed=42, value=0.8, status="completed", **settings):
    """A results.json as run() writes it; `settings` are dotted config keys (method.sparsity=0.5 -> method__sparsity)."""
    metric = GLUE_METRIC.get(task, "accuracy")
    config = {
        "seed": seed, "resume": None, "overwrite": False,
        "model": {"name": "minilm-l6", "source": "embedded", "path": None},
        "method": {"name": method, **(PST if method == "pst" else {})},
        "salience": {"name": "magnitude", "num_batches": 64},
        "mask_schedule": {"name": "cubic"},
        "task": {"name": task, "kind": "classification", "main_metric": metric, "max_length": 128 if task != "rte" else 256,
                 "data_dir": f"/data/glue/{task}", "max_train_samples": 2000},
        "train": {"lr": 5e-5, "epochs": 3, "max_steps": -1, "batch_size": 32, "logging_steps": 10, "save_steps": 500},
        "hardware": {"name": "cpu", "num_threads": 1},
        "paths": {"output_root": "outputs", "cache_dir": "/root/.cache"},
        "logger": {"name": "none"},
    }
    for key, v in settings.items():
        node = config
        *parents, leaf = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    rec = {"status": status, "config": config, "metrics": {"eval": {metric: value, "loss": 0.5}},
           "params": {"total": 22_700_000, "trainable": 120_000, "trainable_percent": 0.53},
           "timing": {"steps": 100}, "run_dir": "x"}
    if status != "completed":
        rec.update(metrics={}, error="Diverged: non-finite training loss at step 7\ntraceback ...")
    return rec


def write(tmp_path, records):
    for i, rec in enumerate(records):
        d = tmp_path / f"{i}_{rec['config']['method']['name']}_{rec['config']['task']['name']}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps(rec))
    return tmp_path


def out_of(capsys, tmp_path, records, *args):
    write(tmp_path, records)
    code = make_table.main([str(tmp_path), *args])
    return code, capsys.readouterr().out


def line_starting(out, prefix):
    return next(line for line in out.splitlines() if line.startswith(prefix))


def test_two_speft_runs_differing_only_in_salience_are_two_rows(tmp_path, capsys):
    recs = [record("speft", salience__name=s, value=v, mask_schedule__name="static")
            for s, v in (("magnitude", 0.6), ("gradient", 0.8))]
    code, out = out_of(capsys, tmp_path, recs)
    assert code == 0
    assert "one per distinct value of salience.name" in out
    assert "| gradient | 80.00 (n=1) |" in out and "| magnitude | 60.00 (n=1) |" in out
    assert "70.00" not in out  # never the mean of two different settings


def test_three_seeds_of_one_setting_are_one_row_with_n3(tmp_path, capsys):
    values = [0.80, 0.84, 0.86]
    code, out = out_of(capsys, tmp_path, [record(seed=s, value=v) for s, v in zip((1, 2, 3), values)])
    assert code == 0
    mean, std = statistics.mean(values) * 100, statistics.stdev(values) * 100
    assert f"{mean:.2f} ± {std:.2f} (n=3)" in out
    assert "83.33 ± 3.06 (n=3)" in out  # the same, by hand
    assert out.count("(n=") == 1


def test_a_safety_switch_added_later_does_not_split_old_and_new_runs(tmp_path, capsys):
    old = record("lora", task="sst2", value=0.8)  # recorded before eval.allow_code_execution existed
    new = record("lora", task="rte", value=0.6, eval__allow_code_execution=False)
    code, out = out_of(capsys, tmp_path, [old, new])
    assert code == 0 and "allow_code_execution" not in out
    assert "| all runs | 80.00 (n=1) | 60.00 (n=1) | 70.00 |" in out  # one row, both tasks


def test_shared_sparsity_a_dense_method_ignored_does_not_split_its_row(tmp_path, capsys):
    # the README sweep: method=full,magnitude method.sparsity=0.5,0.9 -> full runs twice per seed, identically
    recs = []
    for sparsity in (0.5, 0.9):
        for seed, v in zip((1, 2), (0.80, 0.84)):
            full = record(method="full", seed=seed, value=v, method__sparsity=sparsity)
            full["method"] = {"sparsity_note": f"method.sparsity={sparsity} is not applicable to method=full"}
            recs += [full, record(method="magnitude", seed=seed, value=v - 0.1, method__sparsity=sparsity)]
    code, out = out_of(capsys, tmp_path, recs)
    assert code == 0
    assert out.count("82.00 ± 2.83 (n=2)") == 1  # one full row, each seed once
    assert out.count("(n=2)") == 3  # and magnitude at 0.5 and at 0.9


def test_settings_a_method_never_reads_are_not_shown_for_its_rows(tmp_path, capsys):
    # a sweep method=speft,lora salience=magnitude,gradient: LoRA composes a salience metric and a mask schedule it
    # never reads, so its row shows neither, and its two identical runs are one setting (the later one kept);
    # the schedule only SPEFT reads is the same for all its runs: said once above the table, not a column
    recs = [record("speft", salience__name=s, value=v, mask_schedule__name="static")
            for s, v in (("magnitude", 0.6), ("gradient", 0.8))]
    recs += [record("lora", salience__name=s, value=0.7, mask_schedule__name="static") for s in ("magnitude", "gradient")]
    code, out = out_of(capsys, tmp_path, recs)
    assert code == 0
    assert "| lora | — | 70.00 (n=1) |" in out
    assert "| speft | gradient | 80.00 (n=1) |" in out and "| speft | magnitude | 60.00 (n=1) |" in out
    assert out.count("(n=") == 3 and "distinct value of method.name, salience.name (" in out
    assert "mask_schedule.name=static (the methods that read it)" in line_starting(out, "Same in every row")


def test_failed_run_is_listed_not_averaged(tmp_path, capsys):
    recs = [record(seed=1, value=0.8), record(seed=2, value=0.9), record(seed=3, status="diverged"),
            record(seed=4, status="running")]
    code, out = out_of(capsys, tmp_path, recs)
    assert code == 0
    assert "85.00 ± 7.07 (n=2)" in out
    apart = out.split("### Not averaged", 1)[1]
    assert "(2 run(s)" in apart
    assert "| diverged | sst2 | 3 |" in apart and "Diverged: non-finite training loss at step 7" in apart
    assert "| interrupted | sst2 | 4 |" in apart


def test_killed_job_without_record_is_listed(tmp_path, capsys):
    (tmp_path / "7_pst_sst2" / ".hydra").mkdir(parents=True)
    code, out = out_of(capsys, tmp_path, [record()])
    assert "| no record |" in out and "7_pst_sst2" in out


def test_published_numbers_beside_matching_row_with_difference(tmp_path, capsys):
    recs = [record(task="sst2", seed=s, value=v) for s, v in ((1, 0.80), (2, 0.90))] + [record(task="mrpc", value=0.85)]
    code, out = out_of(capsys, tmp_path, recs, "--paper", "pst-table2")
    assert code == 0
    lines = out.splitlines()
    i = next(k for k, line in enumerate(lines) if "85.00 ± 7.07 (n=2)" in line)
    ours, published, delta = lines[i], lines[i + 1], lines[i + 2]
    assert "PST 90%" in ours and "scale differs: CPU miniature (ours minilm-l6, paper bert-base-uncased)" in ours
    assert published.startswith("| ↳ published (bert-base-uncased)")
    assert "| 88.65 |" in published and "| 85.57 |" in published
    assert delta.startswith("| ↳ Δ ours − published") and "| -3.65 |" in delta and "| -0.57 |" in delta
    # Avg. over the two tasks we have, against the paper's numbers over the same two tasks
    assert "85.00*" in ours and f"{(88.65 + 85.57) / 2:.2f}*" in published
    assert "Published rows of bert-base-uncased with no run here: Fine-tune 0%; MaP 50%" in out


def test_row_without_published_counterpart_is_marked(tmp_path, capsys):
    recs = [record(method__sparsity=0.7, value=0.7), record(value=0.8)]
    code, out = out_of(capsys, tmp_path, recs, "--paper", "pst-table2")
    row = line_starting(out, "| 0.7 |")
    assert "no published counterpart" in row and "scale differs" in row
    assert "PST 90%" in line_starting(out, "| 0.9 |")


def test_select_best_takes_the_best_point_and_says_which(tmp_path, capsys):
    recs = [record(train__lr=lr, seed=s, value=v) for lr, s, v in
            ((1e-4, 1, 0.70), (1e-4, 2, 0.72), (3e-5, 1, 0.80), (3e-5, 2, 0.84))]
    code, out = out_of(capsys, tmp_path, recs, "--select-best", "lr")
    assert code == 0
    assert "82.00 ± 2.83 (n=2)" in out and "71.00" not in out
    assert "took lr=3e-05 (best mean dev score 82.00 of 2 point(s))" in out
    assert make_table.main([str(tmp_path)]) == 0  # without the search: one row per lr
    assert capsys.readouterr().out.count("(n=2)") == 2
    # beside the paper (whose first column is a parameter count, never a selection score)
    assert make_table.main([str(tmp_path), "--paper", "pst-table2", "--select-best", "lr"]) == 0
    out = capsys.readouterr().out
    assert "took lr=3e-05" in out and "| -6.65 |" in out  # 82.00 - 88.65


def test_tasks_are_columns_and_task_settings_do_not_split_rows(tmp_path, capsys):
    recs = [record(task=t, value=0.7) for t in ("sst2", "rte", "mrpc")]
    code, out = out_of(capsys, tmp_path, recs)
    head = line_starting(out, "| runs |")
    assert "SST-2 acc" in head and "RTE acc" in head and "MRPC F1" in head and "Avg." in head
    assert out.count("(n=1)") == 3 and "70.00 (n=1) | 70.00 (n=1) | 70.00 (n=1) | 70.00 |" in out


def test_per_task_epochs_split_rows_unless_declared(tmp_path, capsys):
    recs = [record(task="sst2", train__epochs=20), record(task="rte", train__epochs=10)]
    code, out = out_of(capsys, tmp_path, recs)
    assert "one per distinct value of train.epochs" in out
    (tmp_path / "b").mkdir()
    code, out = out_of(capsys, tmp_path / "b", recs, "--per-task", "epochs")
    assert "Settings that change only with the task: " in out and "train.epochs (rte=10, sst2=20)" in out
    assert out.count("| all runs | 80.00 (n=1) | 80.00 (n=1) |") == 1  # one row holding both tasks


def test_models_never_merge(tmp_path, capsys):
    recs = [record(model__name="minilm-l6", value=0.7), record(model__name="bert-base-uncased", value=0.9)]
    code, out = out_of(capsys, tmp_path, recs, "--paper", "pst-table2")
    assert "one per distinct value of model.name" in out
    bert = line_starting(out, "| bert-base-uncased |")
    assert "90.00 (n=1)" in bert and "scale differs: train subset (2000 examples)" in bert
    assert "CPU miniature" in line_starting(out, "| minilm-l6 |")


def test_unknown_paper_and_select_key_are_user_errors(tmp_path, capsys):
    write(tmp_path, [record()])
    assert make_table.main([str(tmp_path), "--paper", "pst-table9"]) == 2
    assert "unknown paper table 'pst-table9'" in capsys.readouterr().err
    assert make_table.main([str(tmp_path), "--select-best", "warmup_steps"]) == 2
    assert "--select-best" in capsys.readouterr().err


def test_spp_rows_match_pruner_pattern_and_training(tmp_path):
    def llm(method, pruner, pattern, steps, acc):
        rec = record(method, task="alpaca", value=0.0, method__pattern=pattern, salience__name=pruner,
                     method__sparsity=None if ":" in pattern else 0.5, model__name="smollm2-135m")
        rec["config"]["task"].update(kind="causal_lm", main_metric="loss")
        rec["metrics"] = {"eval": {"loss": 2.0}, "harness": {t: {"acc": acc} for t in
                          ("boolq", "rte", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "openbookqa")}}
        rec["timing"]["steps"] = steps
        rec["config"]["train"]["max_steps"] = -1 if steps else 0  # evaluate-only: prune, evaluate, no training
        return rec

    write(tmp_path, [llm("spp", "wanda", "2:4", 50, 0.5), llm("spp", "wanda", "2:4", 0, 0.4),
                     llm("lora_star", "sparsegpt", "unstructured", 50, 0.45)])
    runs, apart = load_runs([str(tmp_path)])
    table = build_table(runs, apart, load_published()["spp-table2"])
    matched = {r.published.label if r.published else None: r for r in table.rows}
    assert set(matched) == {"Wanda+SPP 2:4", "Wanda 2:4", None}  # LoRA* has no row in Table 2
    assert matched["Wanda+SPP 2:4"].cells["boolq"].mean == pytest.approx(50.0)
    assert matched["Wanda 2:4"].averages["avg"][0] == pytest.approx(40.0)
    assert "CPU miniature (ours smollm2-135m, paper llama-7b)" in matched[None].scale
    # Table 4's ablation switches: the recorded use_beta / zero_init (absent = the paper's default)
    ablation, default = llm("spp", "wanda", "2:4", 50, 0.5), llm("spp", "wanda", "2:4", 50, 0.6)
    ablation["config"]["method"].update(use_beta=False, zero_init="alpha", r=16)
    default["config"]["method"].update(r=16)
    (tmp_path / "t4").mkdir()
    runs, apart = load_runs([str(write(tmp_path / "t4", [ablation, default]))])
    labels = {r.published.label for r in build_table(runs, apart, load_published()["spp-table4"]).rows if r.published}
    assert labels == {"Wanda+SPP 2:4 zero-init, no Wβ, r=16", "Wanda+SPP 2:4 zero-init Wβ r=16"}



def test_lm_eval_average_over_the_tasks_a_run_has_is_marked(tmp_path):
    """A task skipped for want of data (BoolQ without passages) must not blank the LM-eval average, nor pass
    for the paper's seven-task average: the cell and its Δ are marked and a note names the missing tasks."""
    from sparsetune.tables.render import render_table

    rec = record("spp", task="alpaca", value=0.0, method__pattern="unstructured", salience__name="wanda",
                 method__sparsity=0.5, model__name="smollm2-135m", method__r=16)
    rec["config"]["task"].update(kind="causal_lm", main_metric="loss")
    five = {"rte": 0.5, "winogrande": 0.6, "arc_easy": 0.4, "arc_challenge": 0.2, "openbookqa": 0.3}
    rec["metrics"] = {"eval": {"loss": 2.0}, "harness": {t: {"acc": a} for t, a in five.items()}}
    runs, apart = load_runs([str(write(tmp_path, [rec]))])
    table = build_table(runs, apart, load_published()["spp-table4"])
    (row,) = table.rows
    assert row.cells["lmeval"].mean == pytest.approx(40.0)
    assert row.partial_means["lmeval"] == {"metrics.harness.boolq.acc", "metrics.harness.hellaswag.acc"}
    text = render_table(table)
    assert "40.00 (n=1)*" in text and f"{40.0 - 58.13:+.2f}*" in text
    assert "without boolq, hellaswag" in text

# ---- published numbers ------------------------------------------------------------------------------------------

def test_shipped_published_numbers_load_and_are_complete():
    tables = load_published()
    wanted = {"pst-table2", "pst-table3", "pst-table4", "pst-table5", "speft-table1", "speft-table2", "speft-table9",
              "speft-table11", "spp-table2", "spp-table3", "spp-table4", "spp-table5", "spp-table6", "spp-table7"}
    assert wanted <= set(tables)
    entries = [e for t in tables.values() for e in t.entries()]
    check_entries(entries, "shipped")
    by = {(e["paper"], e["table"], e["model"], e["row"], e["column"]): e for e in entries}
    assert by[("pst", "2", "bert-base-uncased", "PST 90%", "sst2")]["value"] == 88.65
    assert by[("speft", "1", "opt-350m", "Gradient", "stsb")]["std"] == pytest.approx(0.25)
    assert by[("spp", "3", "llama-7b", "Wanda+DSnoT 2:8", "ppl")]["value"] == 2742.98
    assert by[("spp", "6", "llama-2-70b", "Wanda+SPP 2:4", "mmlu")]["value"] == 57.98


def test_shipped_averages_equal_the_mean_of_their_row():
    """A transcription check: every printed Avg. is the mean of its printed row (rounding), except the rows
    whose note says the paper's own Avg. differs."""
    for table in load_published().values():
        for col in (c for c in table.columns if c.avg_of):
            for row in table.rows:
                if col.id in row.values and all(c in row.values for c in col.avg_of) and not row.note:
                    mean = statistics.fmean(row.values[c].value for c in col.avg_of)
                    assert abs(mean - row.values[col.id].value) <= 0.0151, (table.spec, row.model, row.label)


@pytest.mark.skipif(not PAPERS.is_dir(), reason="the papers' texts are not next to this checkout")
def test_shipped_rows_are_verbatim_in_the_paper_texts():
    import yaml

    for path in sorted(DATA_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        text = " ".join((PAPERS / doc["text"]).read_text().replace("±plus-or-minus\\pm±", "±").split())
        for table in doc["tables"]:
            for block in table["blocks"]:
                for row in block["rows"]:
                    values = str(row["values"])
                    if (doc["paper"], table["table"]) != ("pst", "4") and "e" not in values:  # a grid; SPP T1 prints ×10^k
                        assert values in text, (path.name, table["table"], row["row"])


def test_loader_rejects_incomplete_files(tmp_path):
    good = {"paper": "x", "text": "x.txt", "tables": [{
        "table": 1, "title": "t", "match": ["method"],
        "columns": [{"id": "a", "label": "A", "metric": "metrics.eval.accuracy", "factor": 100}, {"id": "b", "label": "B"}],
        "blocks": [{"model": "m", "rows": [{"row": "r", "settings": {"method": "pst"}, "values": "1.0 -"}]}]}]}
    path = tmp_path / "x.yaml"

    def load(doc):
        path.write_text(json.dumps(doc))
        return load_file(path)

    (table,) = load(good)
    assert table.entries() == [{"paper": "x", "table": "1", "model": "m", "row": "r", "column": "a", "value": 1.0}]
    broken = [
        (("blocks", 0, "rows", 0, "row"), None, "needs a `row` label"),
        (("blocks", 0, "rows", 0, "values"), "1.0", "1 values for 2 columns"),
        (("blocks", 0, "rows", 0, "values"), "1.0 x", "'x' is not a number"),
        (("blocks", 0, "rows", 0, "settings"), {"methd": "pst"}, "unknown setting(s) ['methd']"),
        (("blocks", 0, "model"), None, "exactly one of `model` / `models`"),
        (("columns", 0, "id"), None, "needs an `id`"),
    ]
    for where, value, message in broken:
        doc = json.loads(json.dumps(good))
        node = doc["tables"][0]
        for key in where[:-1]:
            node = node[key]
        if value is None:
            node.pop(where[-1])
        else:
            node[where[-1]] = value
        with pytest.raises(ConfigError, match=re.escape(message)):
            load(doc)
    with pytest.raises(ConfigError, match="needs `value`"):
        check_entries([{"paper": "x", "table": "1", "model": "m", "row": "r", "column": "a"}], "test")
    with pytest.raises(ConfigError, match="needs `model`"):
        check_entries([{"paper": "x", "table": "1", "row": "r", "column": "a", "value": 1.0}], "test")
