"""train.select=best: the exported model is the best dev checkpoint of the final (full-sparsity) phase."""
from __future__ import annotations

import json

import pytest

from sparsetune.run import run

EVERY_2 = ["train.eval_strategy=steps", "train.eval_steps=2", "train.select=best", "train.save_total_limit=1"]


@pytest.mark.parametrize("method", ["magnitude", "pst"])
def test_best_is_picked_among_final_phase_evaluations_only(tiny_cfg, tmp_path, method):
    # 8 steps, warm-up 0.25, cool-down 0.25: sparsity reaches its target at step 6; evaluations at 2, 4, 6, 8
    res = run(tiny_cfg(f"method={method}", "method.sparsity=0.5", *EVERY_2), tmp_path)
    sel = res["selection"]
    assert sel["rule"] == "best" and sel["metric"] == "eval_validation_accuracy"
    state = json.loads((tmp_path / "checkpoints" / "checkpoint-8" / "trainer_state.json").read_text())
    scores = {h["step"]: h["eval_validation_accuracy"] for h in state["log_history"] if "eval_validation_accuracy" in h}
    assert set(scores) == {2, 4, 6, 8}
    final_phase = {s: v for s, v in scores.items() if s >= 7}  # scheduled(step - 1) reaches 0.5 at step 6
    best_step = max(final_phase, key=lambda s: (final_phase[s], -s))
    assert sel["best_step"] == best_step and sel["best_metric"] == pytest.approx(final_phase[best_step])
    assert sel["checkpoint"].endswith(f"checkpoints/checkpoint-{best_step}")
    assert res["sparsity"]["achieved"] == pytest.approx(0.5, abs=1e-3)


def test_dense_method_picks_the_best_of_all_evaluations_and_exports_it(tiny_cfg, tmp_path):
    best = run(tiny_cfg("method=full", *EVERY_2), tmp_path / "best")
    sel = best["selection"]
    assert sel["best_step"] in (2, 4, 6, 8)
    # the exported (merged) model is the selected checkpoint: its dev score is the recorded best
    assert best["metrics"]["eval"]["accuracy"] == pytest.approx(sel["best_metric"])


def test_select_best_needs_evaluations(tiny_cfg, tmp_path):
    from sparsetune.validate import ConfigError

    with pytest.raises(ConfigError, match="train.select=best picks among dev evaluations"):
        run(tiny_cfg("train.select=best", "train.eval_strategy=no"), tmp_path)
