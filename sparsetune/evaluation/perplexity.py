"""Token-level perplexity in the Wanda / SparseGPT form (the number the SPP and Wanda tables report).

The texts are joined with "\\n\\n", tokenized once, and cut into floor(tokens/seqlen) non-overlapping
chunks (the tail is dropped). Each chunk is scored alone (no context carried over); the reference's
ppl = exp(sum_c mean_NLL_c * seqlen / (n_chunks * seqlen)) is the exponential of the mean of the chunk
means, which for equal-length chunks is also the mean over all (seqlen-1)*n_chunks predicted tokens.
This is NOT lm-eval's `wikitext` task (document-level rolling word perplexity).

Local data: `read_texts` understands the HF-rows layout of ../shared/data/wikitext-2-raw/test.hf_rows.txt
("\\n".join of the HF wikitext-2-raw-v1 test rows, non-empty rows ending in "\\n"), .jsonl / .json
records with a text field, and any other file as one text.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..bars import bar


# ---- reading local text -------------------------------------------------------------------------
def split_hf_rows(content: str) -> list[str]:
    """Invert "\\n".join(rows) where every non-empty row ends in "\\n" and empty rows are ""."""
    pieces = content.split("\n")
    rows, i = [], 0
    while i < len(pieces):
        if pieces[i]:
            rows.append(pieces[i] + "\n")
            i += 2  # the row's own newline and the join's newline leave one empty piece behind
        else:
            rows.append("")
            i += 1
    return rows


def read_texts(path: str | Path, fmt: str = "auto", text_field: str = "text") -> list[str]:
    """Texts of a local file. fmt: auto | hf_rows | jsonl | json | text."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"text file {str(path)!r} does not exist")
    if fmt == "auto":
        name = path.name.lower()
        fmt = "hf_rows" if name.endswith(".hf_rows.txt") else (
            "jsonl" if name.endswith(".jsonl") else "json" if name.endswith(".json") else "text"
        )
    content = path.read_text(encoding="utf-8")
    if fmt == "hf_rows":
        return split_hf_rows(content)
    if fmt == "text":
        return [content]
    if fmt in ("jsonl", "json"):
        records = [json.loads(line) for line in content.splitlines() if line.strip()] if fmt == "jsonl" else json.loads(content)
        if isinstance(records, dict):
            records = next((v for v in records.values() if isinstance(v, list)), [records])
        try:
            return [str(r[text_field]) for r in records]
        except (KeyError, TypeError):
            raise ValueError(f"{path}: every record needs a {text_field!r} field") from None
    raise ValueError(f"text format must be auto, hf_rows, jsonl, json or text, got {fmt!r}")


# ---- perplexity ---------------------------------------------------------------------------------
@torch.no_grad()
def token_perplexity(
    model: nn.Module, input_ids: torch.Tensor, seqlen: int, max_chunks: int | None = None, batch_size: int = 1
) -> dict:
    """Perplexity of a 1-D (or 1 x T) token stream in non-overlapping `seqlen` chunks."""
    ids = input_ids.reshape(-1)
    if seqlen < 2:
        raise ValueError(f"perplexity seqlen must be >= 2, got {seqlen}")
    n_chunks = ids.numel() // seqlen
    if max_chunks is not None:
        n_chunks = min(n_chunks, int(max_chunks))
    if n_chunks < 1:
        raise ValueError(f"{ids.numel()} tokens do not fill one chunk of seqlen={seqlen}")
    device = next(model.parameters()).device
    chunks = ids[: n_chunks * seqlen].view(n_chunks, seqlen)
    was_training = model.training
    model.eval()
    chunk_nll = []
    try:
        for start in bar(range(0, n_chunks, batch_size), "perplexity", unit="batch"):
            batch = chunks[start : start + batch_size].to(device)
            logits = model(input_ids=batch, use_cache=False).logits.float()
            nll = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="none"
            ).view(batch.shape[0], seqlen - 1)
            chunk_nll.extend(nll.mean(dim=1).tolist())
    finally:
        model.train(was_training)
    mean_nll = sum(chunk_nll) / len(chunk_nll)
    return {
        "perplexity": math.exp(mean_nll),
        "mean_nll": mean_nll,
        "seqlen": seqlen,
        "n_chunks": n_chunks,
        "tokens": int(ids.numel()),
        "tokens_scored": n_chunks * seqlen,
    }


def text_perplexity(
    model: nn.Module,
    tokenizer,
    texts: list[str],
    seqlen: int,
    max_chunks: int | None = None,
    batch_size: int = 1,
    separator: str = "\n\n",
) -> dict:
    """Join, tokenize once (with the tokenizer's special tokens, as the reference), score in chunks."""
    ids = torch.tensor(tokenizer(separator.join(texts))["input_ids"], dtype=torch.long)
    return token_perplexity(model, ids, seqlen, max_chunks, batch_size)


def file_perplexity(
    model: nn.Module,
    tokenizer,
    path: str | Path,
    seqlen: int,
    max_chunks: int | None = None,
    batch_size: int = 1,
    fmt: str = "auto",
    text_field: str = "text",
) -> dict:
    """Perplexity of a local file, e.g. ../shared/data/wikitext-2-raw/test.hf_rows.txt."""
    result = text_perplexity(model, tokenizer, read_texts(path, fmt, text_field), seqlen, max_chunks, batch_size)
    return {**result, "source": str(path)}
