"""The papers' experiment presets: budgets and settings as the papers state them (dry runs, no weights)."""
from __future__ import annotations

import pytest
from conftest import compose_cfg

from sparsetune.run import run

# SPEFT Tables 1, 9, 10, 11: "Trainable = x %" (two significant digits: our count must round to it)
SPEFT_BUDGETS = [("speft-glue-opt350m", 0.35), ("speft-glue-bert", 0.27), ("speft-glue-roberta", 0.24),
                 ("speft-glue-opt125m", 0.35), ("speft-glue-opt1.3b", 0.18)]


@pytest.mark.parametrize("experiment,paper_percent", SPEFT_BUDGETS)
def test_speft_presets_match_the_papers_trainable_percent(tmp_path, experiment, paper_percent):
    res = run(compose_cfg([f"experiment={experiment}", "task=glue/sst2", "dry_run=true"]), tmp_path)
    assert abs(res["params"]["trainable_without_head_percent"] - paper_percent) <= 0.005 + 1e-9


@pytest.mark.parametrize("baseline", ["lora", "pissa"])
def test_speft_preset_composes_with_the_low_rank_baselines_at_equal_count(tmp_path, baseline):
    speft = run(compose_cfg(["experiment=speft-glue-bert", "task=glue/sst2", "dry_run=true"]), tmp_path / "s")
    base = run(compose_cfg(["experiment=speft-glue-bert", f"method={baseline}", "task=glue/sst2", "dry_run=true"]),
               tmp_path / "b")
    assert base["config"]["method"]["name"] == baseline
    assert base["params"]["trainable_without_head"] == speft["params"]["trainable_without_head"] == 12 * 2 * 8 * 1536


@pytest.mark.parametrize("experiment,paper_millions", [("pst-glue-bert", 2.91), ("pst-glue-roberta-base", 2.91),
                                                       ("pst-glue-roberta-large", 7.77)])
def test_pst_presets_count_the_papers_table2_parameters(tmp_path, experiment, paper_millions):
    res = run(compose_cfg([f"experiment={experiment}", "task=glue/sst2", "dry_run=true"]), tmp_path)
    assert abs(res["params"]["trainable"] / 1e6 - paper_millions) / paper_millions < 0.005


def test_pst_presets_follow_the_reference_recipe():
    glue = compose_cfg(["experiment=pst-glue-bert"])
    assert glue.train.max_grad_norm == 0.0  # the reference does not clip
    assert glue.train.select == "best" and glue.train.eval_strategy == "epoch"  # best dev epoch of the final phase
    e2e = compose_cfg(["experiment=pst-e2e-gpt2"])
    assert (e2e.train.label_smoothing, e2e.train.warmup_steps, e2e.train.max_grad_norm) == (0.1, 500, 0.0)


# SPP Table 1: trainable parameters of SPP r=16 and all parameters, as printed (two significant digits)
SPP_TABLE1 = [("spp-alpaca-llama7b", 2.0e7, 6.8e9), ("spp-alpaca-llama13b", 3.1e7, 1.3e10),
              ("spp-alpaca-llama30b", 6.0e7, 3.3e10), ("spp-alpaca-llama65b", 9.8e7, 6.5e10),
              ("spp-alpaca-llama2-7b", 2.0e7, 6.8e9), ("spp-alpaca-llama2-13b", 3.1e7, 1.3e10),
              ("spp-alpaca-llama2-70b", 1.1e8, 6.9e10)]


@pytest.mark.parametrize("experiment,trainable,total", SPP_TABLE1)
def test_spp_presets_count_the_papers_table1_parameters(tmp_path, experiment, trainable, total):
    res = run(compose_cfg([f"experiment={experiment}", "dry_run=true", "eval=none"]), tmp_path)
    p = res["params"]
    assert float(f"{p['trainable']:.1e}") == trainable and float(f"{p['total']:.1e}") == total
    assert res["config"]["method"]["r"] == 16
