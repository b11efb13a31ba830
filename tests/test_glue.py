"""GLUE's original layout with its real quirks, written to a temp dir (no ../shared needed)."""
import pytest

from sparsetune.evaluation.metrics import compute
from sparsetune.tasks.glue_files import read_split


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_quirks_cola_no_header_mrpc_bom_rte_words_stsb_float(tmp_path):
    write(tmp_path / "CoLA/train.tsv", "gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tThe more he reads, the more books.\n")
    write(tmp_path / "MRPC/dev.tsv", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
          '1\t1\t2\tHe said "the pie.\tThe pie business.\n0\t3\t4\tA b.\tC d.\n')
    write(tmp_path / "RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tnot_entailment\n1\tC.\tD.\tentailment\n")
    write(tmp_path / "STS-B/train.tsv", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
          "0\tmain\tMSRvid\t2012\t0001\tnone\tnone\tA plane.\tAn air plane.\t5.000\n")
    cola = read_split(tmp_path, "cola", "train", False)
    assert cola == [{"sentence": "The sailors rode the breeze.", "label": 1},
                    {"sentence": "The more he reads, the more books.", "label": 0}]
    mrpc = read_split(tmp_path, "mrpc", "validation", False)
    assert mrpc[0] == {"sentence1": 'He said "the pie.', "sentence2": "The pie business.", "label": 1}  # unbalanced quote kept
    assert [r["label"] for r in read_split(tmp_path, "rte", "validation", False)] == [1, 0]  # hub ids: entailment=0
    assert read_split(tmp_path, "stsb", "train", True)[0]["label"] == 5.0
    # a task directory itself is accepted too
    assert len(read_split(tmp_path / "CoLA", "cola", "train", False)) == 2


def test_missing_file_names_the_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="SST-2/dev.tsv"):
        read_split(tmp_path, "sst2", "validation", False)


def test_official_metrics_hand_values():
    import numpy as np

    logits = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    labels = np.array([0, 1, 1, 1])
    m = compute(["accuracy", "f1", "matthews_correlation"], logits, labels)
    assert m["accuracy"] == 0.75
    assert m["f1"] == pytest.approx(0.8)  # tp=2, fp=0, fn=1
    # MCC = (tp*tn - fp*fn)/sqrt(...) = (2*1 - 0*1)/sqrt(2*3*1*2)
    assert m["matthews_correlation"] == pytest.approx(2 / np.sqrt(12))
    r = compute(["pearson", "spearmanr"], np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert r["spearmanr"] == pytest.approx(1.0) and 0.9 < r["pearson"] < 1.0
