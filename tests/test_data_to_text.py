"""task=e2e / dart / webnlg: file quirks, linearisation, multi-reference grouping, metrics, a tiny GPT-2 run."""
import json

import pytest
import sacrebleu
from conftest import compose_cfg

from sparsetune import models
from sparsetune.evaluation.nlg_metrics import nlg_scores, reference_streams
from sparsetune.run import run
from sparsetune.tasks.causal_lm import prompt_ids
from sparsetune.tasks.data_to_text_files import dart_pairs, e2e_pairs, e2e_source, group_references, webnlg_pairs
from sparsetune.tasks.generate import generate
from sparsetune.tasks.local_files import read_records

# the original trainset.csv layout: "mr,ref" header, CRLF line ends, quoted fields with commas and "" escapes
E2E_CSV = (
    'mr,ref\r\n'
    '"name[The Vaults], eatType[pub], priceRange[more than £30]","The Vaults is a pub, ""cosy"" and pricey."\r\n'
    '"name[The Vaults], eatType[pub], priceRange[more than £30]",The Vaults pub is expensive.\r\n'
    '"name[Alimentum], area[city centre]",Alimentum is in the city centre.\r\n'
    '"name[The Vaults], eatType[pub], priceRange[more than £30]","A pricey pub:\r\nThe Vaults."\r\n'
)


@pytest.fixture
def e2e_csv(tmp_path):
    path = tmp_path / "trainset.csv"
    path.write_bytes(E2E_CSV.encode("utf-8"))
    return path


def test_e2e_csv_with_crlf_and_quotes(e2e_csv):
    rows = read_records(e2e_csv)
    assert [r["ref"] for r in rows] == ['The Vaults is a pub, "cosy" and pricey.', "The Vaults pub is expensive.",
                                        "Alimentum is in the city centre.", "A pricey pub:\r\nThe Vaults."]
    pairs = e2e_pairs(rows)
    assert pairs[0]["source"] == "name : The Vaults | eatType : pub | priceRange : more than £30"
    assert pairs[2] == {"source": "name : Alimentum | area : city centre", "target": "Alimentum is in the city centre."}
    assert e2e_pairs([{"meaning_representation": "name[X]", "human_reference": " X. "}]) == [{"source": "name : X", "target": "X."}]
    with pytest.raises(ValueError, match="'mr' and a 'ref'"):
        e2e_pairs([{"MR": "name[X]"}])  # the MR-only testset.csv
    with pytest.raises(ValueError, match="cannot parse"):
        e2e_source("name[X], broken")


def test_references_grouped_by_source_in_first_seen_order(e2e_csv):
    groups = group_references(e2e_pairs(read_records(e2e_csv)))
    assert [s for s, _ in groups] == ["name : The Vaults | eatType : pub | priceRange : more than £30",
                                      "name : Alimentum | area : city centre"]
    assert groups[0][1] == ['The Vaults is a pub, "cosy" and pricey.', "The Vaults pub is expensive.", "A pricey pub:\r\nThe Vaults."]
    assert reference_streams([["a", "b"], ["c"]]) == [["a", "c"], ["b", None]]


def test_dart_and_webnlg_layouts():
    dart_file = [{"tripleset": [["Mars Hill College", "JOINED", "1973"], ["Mars Hill College", "LOCATION", "Mars Hill"]],
                  "annotations": [{"source": "WikiSQL", "text": "It joined in 1973."}, {"source": "x", "text": "Joined 1973. "}]}]
    dart_hub = [{"tripleset": [["A", "B", "C"]], "annotations": {"source": ["s"], "text": ["A b C."]}}]
    assert dart_pairs(dart_file) == [
        {"source": "Mars Hill College : joined : 1973 | Mars Hill College : location : Mars Hill", "target": "It joined in 1973."},
        {"source": "Mars Hill College : joined : 1973 | Mars Hill College : location : Mars Hill", "target": "Joined 1973."}]
    assert dart_pairs(dart_hub) == [{"source": "A : b : C", "target": "A b C."}]
    web_file = {"entries": [{"1": {"modifiedtripleset": [{"subject": "Aarhus", "property": "leaderName", "object": "Jacob_B"}],
                                   "lexicalisations": [{"comment": "good", "lex": "Jacob B leads Aarhus."},
                                                       {"comment": "bad", "lex": "Aarhus Jacob."}]}}]}
    web_hub = [{"modified_triple_sets": {"mtriple_set": [["Aarhus | leaderName | Jacob_B"]]},
                "lex": {"comment": ["good", "bad"], "text": ["Jacob B leads Aarhus.", "x"], "lid": ["Id1", "Id2"]}}]
    expected = [{"source": "Aarhus : leaderName : Jacob_B", "target": "Jacob B leads Aarhus."}]
    assert webnlg_pairs(web_file) == expected and webnlg_pairs(web_hub) == expected


def test_scores_equal_sacrebleu_on_the_same_strings():
    hyps = ["The Vaults is a pricey pub.", "Alimentum is a city centre place."]
    refs = [["The Vaults is a pub, cosy and pricey.", "The Vaults pub is expensive."], ["Alimentum is in the city centre."]]
    streams = [["The Vaults is a pub, cosy and pricey.", "Alimentum is in the city centre."], ["The Vaults pub is expensive.", None]]
    got = nlg_scores(hyps, refs)
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score, abs=1e-9)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, streams).score, abs=1e-9)
    assert got["ter"] == pytest.approx(sacrebleu.corpus_ter(hyps, streams).score, abs=1e-9)
    assert nlg_scores(refs[1], [refs[1]])["bleu"] == pytest.approx(100.0)  # a hypothesis equal to its reference
    assert "meteor" in got["unavailable"] or 0 <= got["meteor"] <= 100
    assert got["nist"] > 0 and 0 < got["rouge_l"] < 100


def test_batched_beam_search_equals_one_by_one():
    model, tok, _ = models.load(compose_cfg(["model=tiny-gpt2", "task=e2e"]))
    prompts = [prompt_ids(tok, s, True) for s in ("name : The Vaults ||", "name : Alimentum | area : city centre | near : X ||")]
    gen = {"max_new_tokens": 5, "num_beams": 3, "length_penalty": 0.8, "no_repeat_ngram_size": 4}
    assert generate(model, tok, prompts, {**gen, "eval_batch_size": 2}) == generate(model, tok, prompts, {**gen, "eval_batch_size": 1})


def test_tiny_gpt2_e2e_run_records_bleu(e2e_csv, tmp_path):
    cfg = compose_cfg(["model=tiny-gpt2", "method=full", "task=e2e", f"+task.data_files.train={e2e_csv}",
                       f"+task.data_files.test={e2e_csv}", "task.max_length=96", "task.options.num_beams=2",
                       "task.options.max_new_tokens=8", "task.options.num_samples=5", "train.max_steps=3", "train.batch_size=2",
                       "train.eval_strategy=no", "train.lr=1e-3"])
    res = run(cfg, tmp_path / "run")
    rec = json.loads((tmp_path / "run" / "results.json").read_text())
    g = rec["metrics"]["generation"]
    assert res["status"] == "completed" and rec["metrics"]["eval"]["loss"] > 0
    assert g["num_sources"] == 2 and g["num_references"] == 4 and len(g["samples"]) == 2
    assert g["decoding"] == {"max_new_tokens": 8, "num_beams": 2, "length_penalty": 0.8, "no_repeat_ngram_size": 4,
                             "early_stopping": True, "eval_batch_size": 4, "strategy": "beam"}
    hyps, refs = [s["prediction"] for s in g["samples"]], [s["references"] for s in g["samples"]]
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(3)]
    assert g["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score, abs=1e-9)
    assert rec["data"]["layout"] == "[BOS] <source> || <reference> [EOS]" and rec["data"]["num_train"] == 4


@pytest.mark.parametrize("task", ["e2e", "dart", "webnlg"])
def test_no_local_data_and_no_hub_names_the_local_option(task):
    from sparsetune.hub import OfflineError
    from sparsetune.registry import TASK_LOADERS

    cfg = compose_cfg([f"task={task}"])
    with pytest.raises(OfflineError, match="task.data_dir"):
        TASK_LOADERS.get(task)(cfg.task, None, 0)


def test_no_repeat_ngram_counts_the_generated_text_only():
    """The PST/LoRA decoder bans a repeated n-gram within the generated text; an n-gram of the prompt stays allowed."""
    import torch

    from sparsetune.tasks.generate import NoRepeatInGenerated

    prompt = torch.tensor([[5, 6, 7, 8]])
    rule = NoRepeatInGenerated(2, prompt_width=4)
    # generated so far: 5 (also the prompt's first token); the prompt's bigram 5->6 must stay allowed
    scores = rule(torch.cat([prompt, torch.tensor([[5]])], dim=1), torch.zeros(1, 10))
    assert torch.isfinite(scores).all()
    # generated 5 6 5: the generated bigram 5->6 is banned now
    scores = rule(torch.cat([prompt, torch.tensor([[5, 6, 5]])], dim=1), torch.zeros(1, 10))
    assert scores[0, 6] == -float("inf") and torch.isfinite(scores[0, [0, 1, 2, 3, 4, 5, 7, 8, 9]]).all()
