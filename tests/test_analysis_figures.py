"""PST Fig. 4 / Fig. 5 analysis (sparsetune/analysis, scripts/analysis_figures.py): run dirs built by hand from a
tiny saved BERT whose target matrices are zeroed by known masks, so every similarity and count is known exactly;
and once from two real tiny runs, to check the records and exports run() writes fit together."""
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig, BertForSequenceClassification

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import analysis_figures  # noqa: E402

from sparsetune.analysis import make_figures  # noqa: E402
from sparsetune.analysis.mask_similarity import layer_position  # noqa: E402
from sparsetune.errors import ConfigError  # noqa: E402
from sparsetune.run import run  # noqa: E402
from sparsetune.targets import find_targets  # noqa: E402

TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]
KEEP = 0.25  # fraction each hand-built mask keeps: disjoint masks fit (2 * KEEP <= 1)


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                        max_position_embeddings=16, num_labels=2)
    return BertForSequenceClassification(config)


def first_kept(numel: int, shift: int) -> np.ndarray:
    """Flat keep-mask of k = numel * KEEP positions starting at `shift` (wrapping)."""
    k = int(numel * KEEP)
    mask = np.zeros(numel, dtype=bool)
    mask[(np.arange(k) + shift) % numel] = True
    return mask


def make_run(run_dir: Path, method: str, shift: float, status: str = "completed", base: str = "tiny",
             export: bool = True, outlier: float | None = None) -> dict[str, np.ndarray]:
    """A run dir in the layout run() writes: results.json + model/ (save_pretrained) whose target matrices keep
    exactly the positions first_kept(numel, int(shift * k)) (kept values all non-zero). Returns the masks by key."""
    model = tiny_bert()
    targets = find_targets(model, TARGETS)
    masks = {}
    with torch.no_grad():
        for name, mod in targets.items():
            w = mod.weight
            k = int(w.numel() * KEEP)
            mask = first_kept(w.numel(), int(shift * k)).reshape(w.shape)
            values = w.sign().where(w != 0, torch.ones_like(w)) * (w.abs() + 0.01)  # never exactly zero
            w.copy_(values * torch.from_numpy(mask))
            masks[f"{name}.weight"] = mask
        if outlier is not None:  # on the first matrix's first kept position
            key, mask = next(iter(masks.items()))
            targets[key.removesuffix(".weight")].weight.view(-1)[int(np.flatnonzero(mask)[0])] = outlier
    if export:
        model.save_pretrained(run_dir / "model")
    record = {"status": status, "config": {"method": {"name": method, "sparsity": 1 - KEEP}, "model": {"name": base}},
              "model": {"source": "tiny", "location": base, "name": base},
              "sparsity": {"target": 1 - KEEP, "per_layer": {n: 1 - KEEP for n in targets}}}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(json.dumps(record))
    return masks


@pytest.fixture
def four_runs(tmp_path):
    """A; B = A's masks; C = disjoint from A; D = shifted by half a block: keeps k - k // 2 of A's k positions."""
    root = tmp_path / "runs"
    masks = {"a": make_run(root / "a", "magnitude", 0), "b": make_run(root / "b", "movement", 0),
             "c": make_run(root / "c", "pst", 2), "d": make_run(root / "d", "pst", 0.5)}
    return root, masks


def rows_by(result_dir: Path, a: str, b: str) -> list[dict]:
    data = json.loads((result_dir / "fig5_mask_similarity.json").read_text())
    return [r for r in data["rows"] if Path(r["run_a"]).name == a and Path(r["run_b"]).name == b]


def test_similarity_equals_hand_built_masks(four_runs, tmp_path):
    root, masks = four_runs
    out = tmp_path / "figs"
    summary = make_figures([root / n for n in "abcd"], out)
    assert len(summary["pair_means"]) == 6  # every pair of four runs
    for key, mask in masks["a"].items():
        n, k = mask.size, int(np.count_nonzero(mask))
        assert k == int(n * KEEP)
        same, = [r for r in rows_by(out, "a", "b") if r["matrix"] == key]
        assert same["hamming_similarity"] == 1.0 and same["kept_overlap_a"] == 1.0 == same["kept_overlap_b"]
        disjoint, = [r for r in rows_by(out, "a", "c") if r["matrix"] == key]
        assert disjoint["kept_overlap_a"] == 0.0 == disjoint["kept_overlap_b"]
        assert disjoint["hamming_similarity"] == pytest.approx(1 - 2 * k / n, abs=1e-12)  # they differ on 2k positions
        partial, = [r for r in rows_by(out, "a", "d") if r["matrix"] == key]
        shared = int(np.count_nonzero(mask & masks["d"][key]))
        assert shared == k - k // 2
        assert partial["kept_overlap_a"] == pytest.approx(shared / k, abs=1e-12)
        assert partial["hamming_similarity"] == pytest.approx(1 - 2 * (k - shared) / n, abs=1e-12)
        assert partial["chance_similarity"] == pytest.approx(KEEP**2 + (1 - KEEP) ** 2, abs=1e-12)
        assert (partial["kept_a"], partial["kept_b"], partial["numel"]) == (k, k, n)
    ab = summary["pair_means"]["MaP (magnitude) p=75% vs MvP (movement) p=75%"]
    assert ab["hamming_similarity"] == 1.0 and ab["matrices"] == 12
    # the CSV holds the same numbers as the JSON
    with (out / "fig5_mask_similarity.csv").open() as f:
        csv_rows = list(csv.DictReader(f))
    json_rows = json.loads((out / "fig5_mask_similarity.json").read_text())["rows"]
    assert len(csv_rows) == len(json_rows) == 6 * 12
    assert [float(r["hamming_similarity"]) for r in csv_rows] == [r["hamming_similarity"] for r in json_rows]
    for name in ("fig4_kept_weights.png", "fig5_mask_similarity.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / name).stat().st_size > 10_000


def test_layers_kinds_and_labels(four_runs, tmp_path):
    root, _ = four_runs
    make_figures([root], tmp_path / "figs")  # the directory is searched for runs
    data = json.loads((tmp_path / "figs" / "fig5_mask_similarity.json").read_text())
    kinds = {(r["kind"], r["layer"]) for r in data["rows"]}
    assert kinds == {(k, i) for i in (0, 1) for k in ["attention.self.query", "attention.self.key", "attention.self.value",
                                                        "attention.output.dense", "intermediate.dense", "output.dense"]}
    assert layer_position("model.layers.11.mlp.down_proj.weight") == ("mlp.down_proj", 11)
    assert layer_position("lm_head.weight") == ("lm_head", None)
    labels = [s["label"] for s in json.loads((tmp_path / "figs" / "fig4_kept_weights.json").read_text())["series"]]
    # two pst runs at one sparsity: the run dir's name tells them apart
    assert labels == ["MaP (magnitude) p=75%", "MvP (movement) p=75%", "PST (pst) p=75% [c]", "PST (pst) p=75% [d]"]


def test_histogram_counts_every_kept_weight(tmp_path):
    masks = make_run(tmp_path / "a", "magnitude", 0, outlier=100.0)
    make_run(tmp_path / "b", "pst", 1)
    out = tmp_path / "figs"
    make_figures([tmp_path / "a", tmp_path / "b"], out, bins=17)
    hist = json.loads((out / "fig4_kept_weights.json").read_text())
    state = load_file(str(tmp_path / "a" / "model" / "model.safetensors"))
    nonzero = sum(int((state[key] != 0).sum()) for key in masks)
    a, b = hist["series"]
    assert len(hist["edges"]) == 18 and len(a["counts"]) == 17
    assert sum(a["counts"]) == a["kept"] == nonzero == sum(int(m.sum()) for m in masks.values())
    assert sum(b["counts"]) == b["kept"] and a["total"] == b["total"] == sum(m.size for m in masks.values())
    # the outlier lies beyond the 99.9 % span: counted in the last bin and reported
    assert a["clipped_above"] == 1 and hist["edges"][-1] < 100.0 and b["clipped_above"] == 0
    # one matrix only (the paper shows one layer), and a fixed range
    key = "bert.encoder.layer.1.intermediate.dense.weight"
    make_figures([tmp_path / "a", tmp_path / "b"], out, hist_matrices="*layer.1.intermediate.dense", hist_range=(-1, 1))
    hist = json.loads((out / "fig4_kept_weights.json").read_text())
    assert hist["matrices"] == [key] and hist["edges"][0] == -1 and hist["edges"][-1] == 1
    assert sum(hist["series"][0]["counts"]) == int((state[key] != 0).sum()) == int(masks[key].sum())


def test_one_run_draws_fig4_only(tmp_path):
    make_run(tmp_path / "a", "pst", 0)
    summary = make_figures([tmp_path / "a"], tmp_path / "figs")
    assert "pair_means" not in summary and (tmp_path / "figs" / "fig4_kept_weights.png").is_file()
    assert not (tmp_path / "figs" / "fig5_mask_similarity.png").exists()


def test_unusable_runs_are_refused_by_name(tmp_path):
    make_run(tmp_path / "ok", "magnitude", 0)
    make_run(tmp_path / "failed", "pst", 0, status="failed")
    make_run(tmp_path / "noexport", "movement", 0, export=False)
    with pytest.raises(ConfigError) as err:
        make_figures([tmp_path / "ok", tmp_path / "failed", tmp_path / "noexport"], tmp_path / "figs")
    msg = str(err.value)
    assert "\n" not in msg and "failed (status failed)" in msg and "noexport (no exported model/)" in msg
    assert f"{tmp_path / 'ok'} (" not in msg
    make_run(tmp_path / "other", "pst", 0, base="tiny-llama")
    with pytest.raises(ConfigError, match="different base models:.*other: tiny-llama"):
        make_figures([tmp_path / "ok", tmp_path / "other"], tmp_path / "figs")
    record = json.loads((tmp_path / "other" / "results.json").read_text())
    record["config"]["model"] = {"name": "tiny", "path": "/models/finetuned-elsewhere"}  # same name, another checkpoint
    (tmp_path / "other" / "results.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=r"different base models:.*other: tiny \(model.path=/models/finetuned-elsewhere\)"):
        make_figures([tmp_path / "ok", tmp_path / "other"], tmp_path / "figs")
    with pytest.raises(ConfigError, match="not a run dir"):
        make_figures([tmp_path / "missing"], tmp_path / "figs")
    with pytest.raises(ConfigError, match="matches none of the target matrices"):
        make_figures([tmp_path / "ok"], tmp_path / "figs", hist_matrices="*nothing*")
    assert not (tmp_path / "figs").exists()  # refused before anything was written


def test_cli_prints_means_and_exits_2_on_bad_runs(tmp_path, capsys):
    make_run(tmp_path / "a", "magnitude", 0)
    make_run(tmp_path / "b", "pst", 0)
    assert analysis_figures.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "figs")]) == 0
    out = capsys.readouterr().out
    assert "MaP (magnitude) p=75% vs PST (pst) p=75%: mean mask similarity 1.0000" in out
    assert "wrote" in out and (tmp_path / "figs" / "fig5_mask_similarity.csv").is_file()
    make_run(tmp_path / "c", "movement", 0, status="running")
    capsys.readouterr()  # drop save_pretrained's progress bar
    assert analysis_figures.main([str(tmp_path), "--out", str(tmp_path / "figs2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot analyse:") and "c (status running)" in err and len(err.splitlines()) == 1


def test_real_tiny_runs_fit_together(tiny_cfg, tmp_path):
    """Records and exports run() writes: the targets listed in results.json are the exported tensors, the kept
    counts are the exact per-matrix top-k counts, and a run compared with its own export is identical."""
    run(tiny_cfg("method=magnitude", "method.sparsity=0.5"), tmp_path / "map")
    run(tiny_cfg("method=movement", "method.sparsity=0.5"), tmp_path / "mvp")
    summary = make_figures([tmp_path / "map", tmp_path / "mvp", tmp_path / "map"], tmp_path / "figs")
    hist = json.loads((tmp_path / "figs" / "fig4_kept_weights.json").read_text())
    assert len(hist["matrices"]) == 12
    state = load_file(str(tmp_path / "map" / "model" / "model.safetensors"))
    expected_kept = sum(state[k].numel() - int(state[k].numel() * 0.5) for k in hist["matrices"])
    assert [s["kept"] for s in hist["series"]] == [expected_kept] * 2  # the repeated path counts once
    (pair, means), = summary["pair_means"].items()
    assert pair == "MaP (magnitude) p=50% vs MvP (movement) p=50%" and means["matrices"] == 12
    assert means["chance_similarity"] == pytest.approx(0.5) and 0.0 <= means["hamming_similarity"] <= 1.0


def test_where_and_best_of_select_the_runs(tmp_path):
    # two lrs per method; the figure takes each method's best-lr run, and --where filters on config keys
    for name, method, lr, acc, shift in (("m1", "magnitude", 1e-4, 0.70, 0), ("m5", "magnitude", 5e-4, 0.60, 0),
                                         ("p1", "pst", 1e-4, 0.53, 1), ("p5", "pst", 5e-4, 0.76, 1)):
        make_run(tmp_path / name, method, shift)
        rec = json.loads((tmp_path / name / "results.json").read_text())
        rec["config"].update(train={"lr": lr}, task={"name": "sst2", "main_metric": "accuracy"})
        rec["metrics"] = {"eval": {"accuracy": acc}}
        (tmp_path / name / "results.json").write_text(json.dumps(rec))
    summary = make_figures([tmp_path], tmp_path / "figs", where=["method.sparsity=0.75", "task.name=sst2"], best_of="lr")
    assert len(summary["kept"]) == 2 and len(summary["pair_means"]) == 1
    runs = {Path(r["run_a"]).name for r in json.loads((tmp_path / "figs" / "fig5_mask_similarity.json").read_text())["rows"]}
    runs |= {Path(r["run_b"]).name for r in json.loads((tmp_path / "figs" / "fig5_mask_similarity.json").read_text())["rows"]}
    assert runs == {"m1", "p5"}
    with pytest.raises(ConfigError, match="no run matches --where method.sparsity=0.5"):
        make_figures([tmp_path], tmp_path / "figs", where=["method.sparsity=0.5"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        make_figures([tmp_path], tmp_path / "figs", where=["sparsity"])
