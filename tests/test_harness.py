"""lm-eval in-process on a tiny random LLaMA: its accuracies equal a hand computation from the model's
log-likelihoods of lm-eval's own prompts; skipped tasks, settings (lm-eval and task versions, the task YAML) and
perplexity are recorded; GSM8K is lm-eval's generation task; bad eval configs fail early."""
from pathlib import Path

import pytest
import torch
from conftest import CONF, compose_cfg
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from test_local_tasks import ARC_TEST, write_data_dir
from transformers import LlamaConfig, LlamaForCausalLM

from sparsetune.evaluation import harness, suite
from sparsetune.evaluation.local_tasks import build_local_suite
from sparsetune.evaluation.perplexity import file_perplexity
from sparsetune.evaluation.schema import EvalConfig
from sparsetune.evaluation.suite import check_eval_config, evaluate_suite
from sparsetune.tables.columns import default_columns
from sparsetune.tiny_tokenizer import bytelevel_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    tok = bytelevel_tokenizer()
    torch.manual_seed(6)  # a seed whose random model gets some, not all, fixture answers right
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(cfg), tok


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_data_dir(tmp_path_factory.mktemp("data"))


def eval_cfg(tmp_path, **fields):
    ecfg = OmegaConf.structured(EvalConfig)
    ecfg.name = "test"
    ecfg.work_dir = str(tmp_path / "work")
    for key, value in fields.items():
        OmegaConf.update(ecfg, key, value, merge=False)
    return OmegaConf.create({"eval": ecfg})


@torch.no_grad()
def loglikelihood(model, tok, context: str, continuation: str) -> float:
    """log p(continuation | context), summed over the continuation's tokens."""
    ctx, cont = tok.encode(context), tok.encode(continuation)
    logp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].double(), dim=-1)
    return sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont))


def lm_eval_items(data_dir, tmp_path, name: str, shots: int) -> dict[str, list]:
    """leaf task -> (context, choices, gold) per document, as lm-eval's own task renders them."""
    built = build_local_suite([name], str(data_dir), {}, tmp_path / "reference", {name: shots}).manager.load(name)
    return {t.task_name: [(t.fewshot_context(doc, num_fewshot=shots), t.doc_to_choice(doc), t.doc_to_target(doc))
                          for doc in t.eval_docs] for t in built["tasks"].values()}


def reference_hits(model, tok, items):
    """items: (context, choices, gold). acc = argmax of log-likelihoods, acc_norm = of ll / len(choice)."""
    hits, hits_norm = [], []
    for context, choices, gold in items:
        lls = [loglikelihood(model, tok, context, " " + c) for c in choices]
        hits.append(max(range(len(lls)), key=lls.__getitem__) == gold)
        hits_norm.append(max(range(len(lls)), key=lambda i: lls[i] / len(choices[i])) == gold)
    return hits, hits_norm


def reference_accuracy(model, tok, items):
    hits, hits_norm = reference_hits(model, tok, items)
    return sum(hits) / len(hits), sum(hits_norm) / len(hits_norm)


def test_arc_accuracy_equals_reference_from_loglikelihoods(tiny, data_dir, tmp_path):
    model, tok = tiny
    model.train()
    out = evaluate_suite(model, tok, eval_cfg(tmp_path, tasks=["arc_easy"], data_dir=str(data_dir)))
    assert model.training  # evaluate_suite restores the mode HFLM switched off
    items = lm_eval_items(data_dir, tmp_path, "arc_easy", 0)["arc_easy"]
    assert [gold for _, _, gold in items] == [a - 1 for _, _, a in ARC_TEST]
    acc, acc_norm = reference_accuracy(model.eval(), tok, items)
    assert 0 < acc < 1 and acc != acc_norm  # a discriminating fixture, not all-right or all-wrong
    got = out["harness"]["arc_easy"]
    assert got["acc"] == pytest.approx(acc) and got["acc_norm"] == pytest.approx(acc_norm)
    assert got["acc_stderr"] == pytest.approx((acc * (1 - acc) / (len(ARC_TEST) - 1)) ** 0.5)
    settings = out["harness_settings"]
    assert settings["source"] == "local" and settings["lm_eval_version"] == "0.4.13"
    assert settings["max_length"] == 256 and settings["max_length_cap"] is None  # lm-eval's: the model's positions
    task = settings["per_task"]["arc_easy"]
    assert task["n_samples"] == {"original": 8, "effective": 8} and task["num_fewshot"] == 0 and task["version"] == 1.0
    assert task["task_yaml"] == "lm_eval/tasks/arc/arc_easy.yaml" and set(task["data"]["overrides"]) == {
        "dataset_path", "dataset_kwargs", "training_split", "validation_split"}
    assert len(task["hash"]) == 64 and task["data"]["rows"] == {"test": 8}

    batched = evaluate_suite(model, tok, eval_cfg(tmp_path, tasks=["arc_easy"], data_dir=str(data_dir), batch_size=3, limit=5,
                                                  max_length=4096))
    acc5, _ = reference_accuracy(model, tok, items[:5])
    assert batched["harness"]["arc_easy"]["acc"] == pytest.approx(acc5)
    assert batched["harness_settings"]["per_task"]["arc_easy"]["n_samples"]["effective"] == 5
    assert batched["harness_settings"]["max_length"] == 256  # a cap never exceeds the model's positions


def test_mmlu_one_shot_subjects_and_weighted_group_equal_reference(tiny, data_dir, tmp_path):
    model, tok = tiny
    out = evaluate_suite(model, tok, eval_cfg(tmp_path, tasks=["mmlu", "arc_easy"], data_dir=str(data_dir),
                                              num_fewshot={"mmlu": 1}, limit={"arc_easy": 2}))
    all_hits = []
    for subject, items in lm_eval_items(data_dir, tmp_path, "mmlu", 1).items():
        hits, _ = reference_hits(model.eval(), tok, items)
        assert out["harness_subtasks"][subject]["acc"] == pytest.approx(sum(hits) / len(hits)), subject
        all_hits += hits
    assert len(all_hits) == 60 and 0 < sum(all_hits) < 60
    assert out["harness"]["mmlu"]["acc"] == pytest.approx(sum(all_hits) / len(all_hits))  # weight_by_size: over questions
    assert set(out["harness"]) == {"mmlu", "arc_easy"}
    assert {"mmlu_stem", "mmlu_other", "mmlu_social_sciences", "mmlu_humanities", "mmlu_anatomy"} <= set(out["harness_subtasks"])
    assert len(out["harness_subtasks"]) == 4 + 57
    settings = out["harness_settings"]
    assert settings["num_fewshot"] == {"mmlu": 1, "arc_easy": None} and settings["limit"] == {"mmlu": None, "arc_easy": 2}
    group = settings["per_task"]["mmlu"]
    assert group["n_samples"] == {"original": 60, "effective": 60} and group["num_fewshot"] == 1 and len(group["hash"]) == 64
    assert group["version"] == "2" and group["task_yaml"] == "lm_eval/tasks/mmlu/default/_mmlu.yaml"
    assert settings["per_task"]["mmlu_anatomy"]["version"] == 1.0 and settings["per_task"]["arc_easy"]["num_fewshot"] == 0
    assert settings["per_task"]["arc_easy"]["n_samples"]["effective"] == 2 and settings["lm_eval_version"] == "0.4.13"


def test_gsm8k_is_lm_eval_generation_with_both_filters(tiny, data_dir, tmp_path):
    model, tok = tiny
    out = evaluate_suite(model, tok, eval_cfg(tmp_path, tasks=["gsm8k", "gsm8k_cot"], data_dir=str(data_dir),
                                              num_fewshot={"gsm8k": 2}, limit=2, max_gen_toks=3))
    for name in ("gsm8k", "gsm8k_cot"):
        got = out["harness"][name]
        assert set(got) == {"exact_match/strict-match", "exact_match/flexible-extract",
                            "exact_match_stderr/strict-match", "exact_match_stderr/flexible-extract"}
        assert got["exact_match/strict-match"] == 0.0  # a random model writes no "#### N" in 3 tokens
    settings = out["harness_settings"]
    assert settings["max_gen_toks"] == 3 and settings["per_task"]["gsm8k_cot"]["num_fewshot"] == 8  # lm-eval's default
    assert settings["per_task"]["gsm8k"]["num_fewshot"] == 2 and settings["per_task"]["gsm8k"]["version"] == 3.0
    assert settings["per_task"]["gsm8k_cot"]["task_yaml"] == "lm_eval/tasks/gsm8k/gsm8k-cot.yaml"
    columns = {c.id: c.metric for c in default_columns({"config": {}, "metrics": {"harness": out["harness"]}})}
    assert columns["lm-eval:gsm8k_cot"] == ("metrics.harness.gsm8k_cot.exact_match/flexible-extract",)  # tables show it


def test_skipped_tasks_are_recorded_with_reasons(tiny, data_dir, tmp_path):
    model, tok = tiny
    out = evaluate_suite(model, tok, eval_cfg(tmp_path, tasks=["boolq", "rte", "hellaswag"], data_dir=str(data_dir)))
    assert set(out["harness"]) == {"rte"}
    skipped = out["harness_settings"]["skipped"]
    assert set(skipped) == {"boolq", "hellaswag"}
    assert "passages" in skipped["boolq"] and "eval.files.hellaswag" in skipped["hellaswag"]
    everything_skipped = evaluate_suite(model, tok, eval_cfg(tmp_path, tasks=["boolq"], data_dir=str(data_dir)))
    assert everything_skipped["harness"] == {} and "boolq" in everything_skipped["harness_settings"]["skipped"]


def test_perplexity_is_the_wanda_form_of_the_local_file(tiny, data_dir, tmp_path):
    model, tok = tiny
    text = data_dir / "wikitext-2-raw/test.hf_rows.txt"
    text.parent.mkdir(parents=True)
    text.write_text("\n".join(["", " = Valkyria = \n", "", " The game began development in 2010 .\n"] * 20), encoding="utf-8")
    out = evaluate_suite(model, tok, eval_cfg(tmp_path, data_dir=str(data_dir), **{
        "perplexity.enabled": True, "perplexity.seqlen": 32, "perplexity.max_chunks": 4}))
    direct = file_perplexity(model, tok, text, seqlen=32, max_chunks=4)
    assert set(out) == {"perplexity"}
    assert out["perplexity"]["perplexity"] == pytest.approx(direct["perplexity"]) and out["perplexity"]["n_chunks"] == 4
    assert out["perplexity"]["seqlen"] == 32 and out["perplexity"]["source"] == str(text)


def test_none_and_bad_configs(tiny, data_dir, tmp_path, monkeypatch):
    model, tok = tiny
    assert evaluate_suite(model, tok, OmegaConf.create({"eval": {"name": "none"}})) == {}
    assert evaluate_suite(model, tok, OmegaConf.create({"model": {}})) == {}
    # offline and no local data: the error names the local option before anything runs
    monkeypatch.setattr(harness, "hub_reachable", lambda: False)
    monkeypatch.setattr(suite, "hub_reachable", lambda: False)
    with pytest.raises(ValueError, match="eval.data_dir"):
        check_eval_config(eval_cfg(tmp_path, tasks=["arc_easy"]))
    with pytest.raises(ValueError, match="eval.perplexity.data_file"):
        check_eval_config(eval_cfg(tmp_path, **{"perplexity.enabled": True}))
    with pytest.raises(ValueError, match="nothing to evaluate"):
        check_eval_config(eval_cfg(tmp_path))
    local = dict(data_dir=str(data_dir), tasks=["arc_easy"])
    check_eval_config(eval_cfg(tmp_path, num_fewshot={"mmlu": 5}, **local))  # a preset's setting for a task not run
    with pytest.raises(ValueError, match=r"\['mmul'\] that are not in eval.tasks"):
        check_eval_config(eval_cfg(tmp_path, num_fewshot={"mmul": 5}, **local))
    with pytest.raises(ValueError, match="integer >= 1"):
        check_eval_config(eval_cfg(tmp_path, limit=0, **local))
    with pytest.raises(ValueError, match="integer >= 0"):
        check_eval_config(eval_cfg(tmp_path, num_fewshot={"arc_easy": -1}, **local))
    with pytest.raises(ValueError, match="no local definition"):
        check_eval_config(eval_cfg(tmp_path, data_dir=str(data_dir), tasks=["triviaqa"]))
    with pytest.raises(ValueError, match="does not exist"):
        check_eval_config(eval_cfg(tmp_path, files={"arc_easy": str(tmp_path / "missing.json")}, **local))
    with pytest.raises(ValueError, match=r"eval.files.arc_easy.train=.* does not exist"):
        check_eval_config(eval_cfg(tmp_path, files={"arc_easy": {"train": str(tmp_path / "missing.csv")}}, **local))
    with pytest.raises(ValueError, match="max_gen_toks"):
        check_eval_config(eval_cfg(tmp_path, max_gen_toks=0, **local))
    with pytest.raises(ValueError, match="not in eval.tasks"):
        check_eval_config(eval_cfg(tmp_path, files={"boolq": str(tmp_path)}, **local))
    with pytest.raises(ValueError, match="not a directory"):
        check_eval_config(eval_cfg(tmp_path, data_dir=str(data_dir / "nope"), tasks=["rte"]))
    with pytest.raises(ValueError, match="integer or a mapping"):
        check_eval_config(eval_cfg(tmp_path, num_fewshot="five", **local))
    with pytest.raises(ValueError, match="batch_size"):
        check_eval_config(eval_cfg(tmp_path, batch_size=0, **local))
    with pytest.raises(ValueError, match="does not exist"):
        check_eval_config(eval_cfg(tmp_path, **{"perplexity.enabled": True, "perplexity.data_file": str(tmp_path / "x")}))


@pytest.fixture(scope="module")
def eval_group_override():
    """`eval=` once the lead's train.yaml lists the group in its defaults, `+eval=` until then."""
    ConfigStore.instance().store(group="schema/eval", name="base", node=EvalConfig)
    return "eval" if "eval" in compose_cfg() else "+eval"


@pytest.mark.parametrize("option", sorted(p.stem for p in (Path(CONF) / "eval").glob("*.yaml")))
def test_every_eval_option_composes_with_the_schema(option, eval_group_override):
    cfg = compose_cfg([f"{eval_group_override}={option}", "eval.limit=3"])
    assert cfg.eval.name == option and cfg.eval.limit == 3
    if option == "llm":
        assert cfg.eval.num_fewshot == {"mmlu": 5} and len(cfg.eval.tasks) == 8 and cfg.eval.perplexity.enabled
        with pytest.raises(Exception, match="batchsize"):  # a typo fails at compose time
            compose_cfg([f"{eval_group_override}={option}", "eval.batchsize=2"])
