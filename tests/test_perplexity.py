"""Wanda/SparseGPT-style chunked perplexity against a hand computation, and the local text readers."""
import json
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from sparsetune.evaluation.perplexity import file_perplexity, read_texts, split_hf_rows, text_perplexity, token_perplexity

torch.set_num_threads(1)


def tiny_model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


class CharTokenizer:
    """One token per character (ids 3..39), a BOS id 1 in front: enough to see what gets tokenized."""

    def __call__(self, text):
        return {"input_ids": [1] + [3 + ord(c) % 37 for c in text]}


def hand_perplexity(model, ids, seqlen, n_chunks):
    nll_sum = 0.0
    for c in range(n_chunks):
        chunk = ids[c * seqlen : (c + 1) * seqlen]
        with torch.no_grad():
            logp = torch.log_softmax(model(chunk.unsqueeze(0)).logits[0].double(), dim=-1)
        chunk_nll = -sum(float(logp[t, chunk[t + 1]]) for t in range(seqlen - 1)) / (seqlen - 1)
        nll_sum += chunk_nll * seqlen  # the reference weights each chunk's mean by seqlen ...
    return math.exp(nll_sum / (n_chunks * seqlen))  # ... and divides by n_chunks * seqlen


def test_token_perplexity_equals_hand_computation():
    model = tiny_model()
    ids = torch.randint(0, 40, (30,), generator=torch.Generator().manual_seed(0))
    out = token_perplexity(model, ids, seqlen=8)
    assert (out["n_chunks"], out["tokens"], out["seqlen"], out["tokens_scored"]) == (3, 30, 8, 24)  # tail of 6 dropped
    assert out["perplexity"] == pytest.approx(hand_perplexity(model, ids, 8, 3), rel=1e-5)
    capped = token_perplexity(model, ids.view(1, -1), seqlen=8, max_chunks=2, batch_size=2)
    assert capped["n_chunks"] == 2
    assert capped["perplexity"] == pytest.approx(hand_perplexity(model, ids, 8, 2), rel=1e-5)
    with pytest.raises(ValueError, match="seqlen"):
        token_perplexity(model, ids, seqlen=31)


def test_text_perplexity_joins_with_blank_lines_and_tokenizes_once():
    model = tiny_model()
    texts = ["ab c", "", "de\n"]
    out = text_perplexity(model, CharTokenizer(), texts, seqlen=4)
    joined = "ab c\n\n\n\nde\n"
    assert out["tokens"] == 1 + len(joined) and out["n_chunks"] == (1 + len(joined)) // 4
    ids = torch.tensor(CharTokenizer()(joined)["input_ids"])
    assert out["perplexity"] == pytest.approx(hand_perplexity(model, ids, 4, out["n_chunks"]), rel=1e-5)


def test_hf_rows_layout_round_trips_and_other_formats(tmp_path):
    rows = ["", " = Title = \n", "", " Some text .\n", " More\n", ""]
    path = tmp_path / "test.hf_rows.txt"
    path.write_text("\n".join(rows), encoding="utf-8")
    assert split_hf_rows("\n".join(rows)) == rows
    assert read_texts(path) == rows
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t}) for t in ["x", "y"]))
    assert read_texts(jsonl) == ["x", "y"]
    js = tmp_path / "a.json"
    js.write_text(json.dumps([{"body": "p"}, {"body": "q"}]))
    assert read_texts(js, text_field="body") == ["p", "q"]
    with pytest.raises(ValueError, match="'text' field"):
        read_texts(js)
    with pytest.raises(ValueError, match="does not exist"):
        read_texts(tmp_path / "missing.txt")
    out = file_perplexity(tiny_model(), CharTokenizer(), path, seqlen=5, max_chunks=3)
    assert out["source"] == str(path) and out["n_chunks"] == 3
