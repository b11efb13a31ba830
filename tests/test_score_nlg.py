"""scripts/score_nlg.py and the scorer behind it (nlg_scorer.py): the E2E references layout, hand-checkable
BLEU / NIST / TER, the one-line message without pycocoevalcap or Java, and (with them) METEOR / ROUGE_L / CIDEr."""
import json
import math
import os
import shutil
import sys
from pathlib import Path

import pytest

from sparsetune.evaluation import coco_caption
from sparsetune.evaluation.nlg_files import parse_reference_groups, read_outputs, read_reference_groups
from sparsetune.evaluation.nlg_scorer import lower_and_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import score_nlg  # noqa: E402

needs_coco = pytest.mark.skipif(coco_caption.missing() is not None,
                                reason=f"METEOR / ROUGE_L / CIDEr need the nlg extra and Java: {coco_caption.missing()}")

FIVE = "alpha beta gamma delta epsilon"
NEAR = "alpha beta gamma delta zeta"   # 4 of 5 words and 1-4-grams shared with ...
OTHER = "alpha beta gamma delta eta"   # ... this one


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def score(tmp_path, capsys, task, hyps, ref_groups):
    """Run the script; (exit code, parsed stdout or None, stderr lines)."""
    hyp = write(tmp_path, "hyp.txt", hyps)
    refs = write(tmp_path, "refs.txt", [line for i, g in enumerate(ref_groups) for line in ([""] if i else []) + g])
    code = score_nlg.main(["--task", task, "--hyp", hyp, "--refs", refs])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), [line for line in err.splitlines() if line.strip()]


@pytest.fixture
def no_java(monkeypatch):
    """Java absent: METEOR / ROUGE_L / CIDEr cannot run."""
    real = shutil.which
    monkeypatch.setattr(coco_caption.shutil, "which", lambda name, *a, **k: None if name == "java" else real(name, *a, **k))


def test_reference_layout_groups_single_refs_and_errors(tmp_path):
    assert parse_reference_groups(["a1", "a2", "", "b1", "", "c1", "c2", "c3", "", ""]) == [["a1", "a2"], ["b1"], ["c1", "c2", "c3"]]
    assert parse_reference_groups(["a", "b", "c"]) == [["a"], ["b"], ["c"]]  # no empty line: one reference per input
    with pytest.raises(ValueError, match="refs line 3: an input with no reference"):
        parse_reference_groups(["a1", "", "", "b1"], "refs")
    with pytest.raises(ValueError, match="line 1"):
        parse_reference_groups(["", "a1"], "refs")
    crlf = tmp_path / "refs.txt"
    crlf.write_bytes("\ufeffThe Vaults is a pub.\r\nA pub.\r\n\r\nCafé Rouge.\r\n".encode("utf-8"))
    assert read_reference_groups(crlf) == [["The Vaults is a pub.", "A pub."], ["Café Rouge."]]
    assert read_outputs(write(tmp_path, "hyp.txt", ["one", "", "three"])) == ["one", "", "three"]  # an empty output counts


def test_count_mismatch_and_bad_input_are_one_line_errors(tmp_path, capsys):
    code, out, err = score(tmp_path, capsys, "e2e", ["x y", "z w", "v u"], [["x y"], ["z w"]])
    assert code == 2 and out is None and len(err) == 1
    assert "has 3 outputs but" in err[0] and "has 2 reference groups" in err[0] and "Traceback" not in err[0]
    code = score_nlg.main(["--task", "e2e", "--hyp", str(tmp_path / "missing.txt"), "--refs", str(tmp_path / "refs.txt")])
    assert code == 2 and "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        score_nlg.main(["--task", "rotowire", "--hyp", "h", "--refs", "r"])
    err = capsys.readouterr().err
    assert "invalid choice: 'rotowire'" in err and all(t in err for t in ("e2e", "dart", "webnlg"))


def test_identical_outputs_and_a_worked_example(tmp_path, capsys, no_java):
    code, got, err = score(tmp_path, capsys, "dart", [FIVE, NEAR], [[FIVE], [NEAR, "something else entirely here"]])
    assert code == 0 and got["BLEU"] == pytest.approx(100.0) and got["TER"] == 0.0
    # item 2 against OTHER only: 1-4-gram matches 4/5, 3/4, 2/3, 1/2 -> corpus 9/10, 7/8, 5/6, 3/4; equal lengths
    code, got, err = score(tmp_path, capsys, "webnlg", [FIVE, NEAR], [[FIVE], [OTHER]])
    assert got["BLEU"] == pytest.approx(100 * (0.9 * 0.875 * (5 / 6) * 0.75) ** 0.25)
    assert got["TER"] == pytest.approx((0 + 1 / 5) / 2)  # one substitution in five words
    # TER: the best reference per output (1 edit in 4 words beats 4 in 4)
    code, got, err = score(tmp_path, capsys, "dart", ["a b c d"], [["w x y z", "a b c x"]])
    assert got["TER"] == pytest.approx(0.25)


def test_nist_by_hand(tmp_path, capsys, no_java):
    # one item, output = reference, 8 distinct words: unigram info log2(8/1) = 3, longer n-grams carry none
    words = "one two three four five six seven eight"
    code, got, err = score(tmp_path, capsys, "e2e", [words], [[words]])
    assert got["NIST"] == pytest.approx(3.0) and got["BLEU"] == pytest.approx(100.0)
    # half the length of the reference: the NIST brevity factor exp(-beta ln(0.5)^2), beta = -ln 0.5 / ln(1.5)^2
    code, got, err = score(tmp_path, capsys, "e2e", ["one two three four"], [[words]])
    beta = -math.log(0.5) / math.log(1.5) ** 2
    assert got["NIST"] == pytest.approx(3.0 * math.exp(-beta * math.log(0.5) ** 2))


def test_each_task_tokenises_like_its_scorer(tmp_path, capsys, no_java):
    # E2E: mteval tokens, case-insensitive
    hyp, ref = "The Vaults is a PUB, near Café Rouge.", "the vaults is a pub , near café rouge ."
    code, got, err = score(tmp_path, capsys, "e2e", [hyp], [[ref]])
    assert got["BLEU"] == pytest.approx(100.0) and "TER" not in got
    # DART / WebNLG: LoRA's --lower --tokenize splits every non-word character
    assert lower_and_split("Aarhus_Airport's city: Aarhus,Denmark.") == "aarhus_airport ' s city : aarhus , denmark ."
    hyp, ref = "Aarhus,Denmark is a city (in Jutland)", "aarhus , denmark is a city ( in jutland )"
    code, got, err = score(tmp_path, capsys, "webnlg", [hyp], [[ref]])
    assert got["BLEU"] == pytest.approx(100.0) and got["TER"] == 0.0


def test_dart_and_webnlg_keep_the_first_six_references(tmp_path, capsys, no_java):
    refs = [f"reference number {i} says nothing" for i in range(6)] + [FIVE]
    code, got, err = score(tmp_path, capsys, "dart", [FIVE], [refs])
    assert got["TER"] > 0 and any("only the first 6 are scored" in line for line in err)
    code, got, err = score(tmp_path, capsys, "e2e", [FIVE], [refs])  # the E2E scorer uses every reference
    assert got["BLEU"] == pytest.approx(100.0) and not any("first 6" in line for line in err)


def test_without_java_one_line_and_the_other_scores(tmp_path, capsys, no_java):
    code, got, err = score(tmp_path, capsys, "dart", [FIVE], [[FIVE]])
    assert code == 0 and set(got) == {"BLEU", "NIST", "TER"}
    assert len(err) == 1 and "METEOR, ROUGE_L, CIDEr" in err[0] and "java not found" in err[0]
    assert "pip install '.[nlg]'" in err[0] and "Java runtime" in err[0] and "Traceback" not in err[0]


def test_without_pycocoevalcap_one_line(tmp_path, capsys, monkeypatch):
    real = coco_caption.find_spec
    monkeypatch.setattr(coco_caption, "find_spec", lambda name: None if name == "pycocoevalcap" else real(name))
    code, got, err = score(tmp_path, capsys, "e2e", [FIVE], [[FIVE]])
    assert code == 0 and set(got) == {"BLEU", "NIST"}
    assert len(err) == 1 and "pycocoevalcap" in err[0] and "not found" in err[0] and "pip install '.[nlg]'" in err[0]


def test_a_failing_java_tool_becomes_one_line():
    with pytest.raises(coco_caption.CocoUnavailable) as caught:
        with coco_caption.java_stderr("METEOR 1.5 (java)"):
            os.write(2, b"Error: Unable to access jarfile meteor-1.5.jar\n")
            raise ValueError("could not convert string to float: ''")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("METEOR 1.5 (java) failed (ValueError")
    assert message.endswith("java: Error: Unable to access jarfile meteor-1.5.jar)")


def test_training_evaluator_reports_the_scripts_numbers(tmp_path, capsys, monkeypatch, no_java):
    from sparsetune.tasks import data_to_text

    groups = [("name : The Vaults | eatType : pub", ["The Vaults is a pub.", "The Vaults pub."]),
              ("name : Alimentum | area : city centre", ["Alimentum is in the city centre."])]
    hyps = ["The Vaults is a pub in town.", "Alimentum is in the centre."]
    monkeypatch.setattr(data_to_text, "generate", lambda model, tok, prompts, gen: hyps)
    monkeypatch.setattr(data_to_text, "prompt_ids", lambda tok, text, bos: [0])
    opts = {**data_to_text.DEFAULTS, "num_beams": 2}
    for task in ("e2e", "webnlg"):
        got = data_to_text.generation_evaluator(groups, opts, True, task)(None, None, None)
        code, script, err = score(tmp_path, capsys, task, hyps, [r for _, r in groups])
        assert {k: got[k] for k in script} == script and set(script) <= set(got)
        assert got["scorer"]["task"] == task and "sacrebleu" in got["scorer"]["versions"]
        assert set(got["unavailable"]) == {"METEOR", "ROUGE_L", "CIDEr"} and got["bleu"] > 0  # sacrebleu on raw text too


@needs_coco
def test_meteor_rouge_cider_by_hand_and_against_pycocoevalcap(tmp_path, capsys):
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # outputs equal to their only reference, no word shared between items: every 1-4-gram has IDF log 2
    same = ["the vaults is a cheap pub", "alimentum serves french food near riverside"]
    code, got, err = score(tmp_path, capsys, "e2e", same, [[s] for s in same])
    assert (got["METEOR"], got["ROUGE_L"], got["CIDEr"]) == (pytest.approx(100.0), pytest.approx(100.0), pytest.approx(10.0))
    assert err == []  # the Java tools' progress lines are kept off stderr

    hyps = ["The Vaults is a pub, near Café Rouge.", "Alimentum serves French food.", "Blue Spice is cheap!"]
    refs = [["The Vaults pub is near Café Rouge.", "Near Café Rouge, there is a pub called The Vaults."],
            ["Alimentum is a French restaurant.", "French food is served at Alimentum.", "Alimentum serves French food."],
            ["Blue Spice is a cheap coffee shop."]]
    code, got, err = score(tmp_path, capsys, "e2e", hyps, refs)
    ptb = PTBTokenizer().tokenize({**{f"h{i}": [{"caption": h}] for i, h in enumerate(hyps)},
                                   **{f"r{i}": [{"caption": r} for r in rs] for i, rs in enumerate(refs)}})
    gts, res = {i: ptb[f"r{i}"] for i in range(3)}, {i: ptb[f"h{i}"] for i in range(3)}
    assert got["ROUGE_L"] == pytest.approx(100 * Rouge().compute_score(gts, res)[0])
    assert got["CIDEr"] == pytest.approx(Cider().compute_score(gts, res)[0])
    assert 0 < got["METEOR"] < 100 and set(got) == {"BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"}
