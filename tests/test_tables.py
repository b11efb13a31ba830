"""make_table builds its table from results.json files only (records written here by hand)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import make_table  # noqa: E402


def record(method, sparsity, task, main, value, status="completed"):
    return {"status": status, "config": {"method": {"name": method}, "task": {"name": task, "main_metric": main}},
            "sparsity": {"target": sparsity}, "metrics": {"eval": {main: value}}}


def test_table_groups_seeds_and_lists_failures(tmp_path, capsys):
    recs = [record("pst", 0.9, "sst2", "accuracy", 0.80), record("pst", 0.9, "sst2", "accuracy", 0.90),
            record("magnitude", 0.9, "rte", "accuracy", 0.55), record("pst", 0.9, "rte", "accuracy", 0.1, "failed")]
    for i, r in enumerate(recs):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "results.json").write_text(json.dumps(r))
    assert make_table.main([str(tmp_path), "--paper", "pst-table2"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| pst | 90%"))
    assert "85.00 ± 7.07 (n=2) [88.65]" in row  # mean of 80 and 90, published PST 90% SST-2 beside it
    assert "1 failed run(s)" in out
