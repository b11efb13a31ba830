"""scripts/plot_runs.py and sparsetune/analysis/run_plots.py on two real tiny runs: valid PNGs, and the drawn data
are the runs' own steps, metrics, per-layer sparsities and exported zeros."""
import json
import shutil
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import plot_runs  # noqa: E402
from conftest import TINY, compose_cfg  # noqa: E402

from sparsetune.analysis.run_plots import PNG, pooled_kept  # noqa: E402
from sparsetune.analysis.run_plots import plot_runs as make_plots
from sparsetune.history import HISTORY_FILE, read_history  # noqa: E402
from sparsetune.run import run  # noqa: E402

EVERY_4 = ["train.eval_strategy=steps", "train.eval_steps=4", "method.sparsity=0.5"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for method in ("pst", "magnitude"):
        res = run(compose_cfg([*TINY, f"method={method}", *EVERY_4]), root / method)
        assert res["status"] == "completed"
    return root / "pst", root / "magnitude"


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_script_writes_every_plot_as_a_valid_png(two_runs, tmp_path, capsys):
    out = tmp_path / "plots"
    assert plot_runs.main([*map(str, two_runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in PNG.values():
        png = out / name
        assert png.is_file() and is_png(png) and f"wrote {png}" in printed
        image = matplotlib.image.imread(png)
        assert image.ndim == 3 and min(image.shape[:2]) > 200
        assert image[..., :3].std() > 0.05  # something is drawn on the white canvas


def test_plotted_data_are_the_runs_steps_metrics_and_zeros(two_runs, tmp_path):
    result = make_plots(list(two_runs), tmp_path)
    assert result["skipped"] == {}
    assert set(result["runs"]) == {"pst 50%", "magnitude 50%"}  # the legend labels
    for label, run_dir in zip(("pst 50%", "magnitude 50%"), two_runs):
        history = read_history(run_dir / HISTORY_FILE)
        record = json.loads((run_dir / "results.json").read_text())
        train = [e for e in history if e["kind"] == "train"]
        assert result["loss"]["data"][label] == {"step": [1, 2, 4, 6, 8], "loss": [e["loss"] for e in train]}
        ev = result["eval"]["data"][label]
        assert ev["key"] == "eval_validation_accuracy" and ev["step"] == [4, 8]
        assert ev["final_step"] == 8 and ev["final_value"] == record["metrics"]["eval"]["accuracy"]
        sp = result["sparsity"]["data"][label]
        assert sp["step"] == [1, 2, 4, 6, 8] and sp["scheduled"][0] == 0.0 and sp["scheduled"][-1] == 0.5
        per_layer = {k: v for k, v in record["sparsity"]["per_layer"].items() if "[" not in k}
        assert result["per_layer"]["data"][label] == per_layer
        # the mask picture is of the first target, read from the export: its zeros are what the run measured
        first = next(iter(per_layer))
        mask = result["mask"]["data"][label]
        weight = load_file(run_dir / "model" / "model.safetensors")[f"{first}.weight"]
        assert mask["matrix"] == f"{first}.weight" and mask["shape"] == list(weight.shape)
        assert mask["sparsity"] == pytest.approx(per_layer[first]) == pytest.approx(float((weight == 0).float().mean()))


def test_a_run_without_history_falls_back_to_its_train_log(two_runs, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(two_runs[0], old)
    (old / HISTORY_FILE).unlink()
    result = make_plots([old], tmp_path / "plots", matrix=None)
    record = json.loads((old / "results.json").read_text())
    assert result["runs"]["pst 50%"]["source"] == "results.json train_log"
    assert result["loss"]["data"]["pst 50%"]["step"] == [h["step"] for h in record["train_log"]]
    assert result["eval"]["data"]["pst 50%"]["final_value"] == record["metrics"]["eval"]["accuracy"]
    assert "sparsity" in result["skipped"] and not (tmp_path / "plots" / PNG["sparsity"]).exists()


def test_an_unknown_matrix_is_one_line_naming_the_targets(two_runs, tmp_path, capsys):
    assert plot_runs.main([str(two_runs[0]), "--out", str(tmp_path), "--matrix", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "'nope'" in err and "attention.self.query" in err


def test_a_named_matrix_is_drawn(two_runs, tmp_path):
    record = json.loads((two_runs[1] / "results.json").read_text())
    name = [k for k in record["sparsity"]["per_layer"] if "[" not in k][-1]  # the last target, not the default
    mask = make_plots([two_runs[1]], tmp_path, matrix=name)["mask"]["data"]["magnitude 50%"]
    assert mask["matrix"] == f"{name}.weight" and mask["sparsity"] == pytest.approx(record["sparsity"]["per_layer"][name])


def test_pooled_kept_averages_blocks():
    kept = np.array([[1, 1, 0, 0, 1],
                     [1, 0, 0, 0, 1]], dtype=bool)
    pooled, block = pooled_kept(kept, cells=3)
    assert block == (1, 2)
    np.testing.assert_allclose(pooled, [[1.0, 0.0, 1.0], [0.5, 0.0, 1.0]])  # the last block holds one column


def test_sparsetune_plot_subcommand_from_another_directory(two_runs, tmp_path):
    """`sparsetune plot ...` (here as python -m sparsetune, the console script's entry) from outside the checkout."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "sparsetune", "plot", *map(str, two_runs), "--out", "plots"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(is_png(tmp_path / "plots" / name) for name in PNG.values())
