"""Quick corpus metrics on the raw strings for data-to-text generation with several references per source.

These are NOT the papers' numbers: PST / LoRA score E2E, DART and WebNLG with their own scorers' tokenisation
and definitions, which nlg_scorer.py reproduces (scripts/score_nlg.py; metrics.generation.BLEU etc.). Here:
- BLEU, chrF, TER: sacrebleu's standard corpus scores (references as streams, a missing reference is None),
  comparable with other work that reports sacrebleu signatures.
- NIST: mteval's definition (mteval.py) on sacrebleu's 13a tokens.
- ROUGE-L: rouge_score, best F over an item's references, averaged, on rouge_score's own tokens (lower-cased,
  punctuation dropped): about 8 points under the E2E scorer's PTB-token ROUGE-L on the same texts.
- METEOR: nltk's re-implementation, only when its WordNet data is installed (else under "unavailable").
"""
from __future__ import annotations

from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from .mteval import nist


def reference_streams(refs: list[list[str]]) -> list[list[str | None]]:
    """Item-wise reference lists -> sacrebleu streams: stream k holds each item's k-th reference or None."""
    if not refs or any(not r for r in refs):
        raise ValueError("every item needs at least one reference")
    depth = max(len(r) for r in refs)
    return [[r[k] if k < len(r) else None for r in refs] for k in range(depth)]


def _nist(hyps: list[str], refs: list[list[str]], lowercase: bool) -> float:
    tok = Tokenizer13a()
    norm = (lambda s: tok(s.lower()).split()) if lowercase else (lambda s: tok(s).split())
    return nist([norm(h) for h in hyps], [[norm(r) for r in rs] for rs in refs])


def _rouge_l(hyps: list[str], refs: list[list[str]]) -> float:
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(["rougeL"])
    return 100.0 * sum(scorer.score_multi(rs, h)["rougeL"].fmeasure for h, rs in zip(hyps, refs)) / len(hyps)


def _meteor(hyps: list[str], refs: list[list[str]]) -> float:
    from nltk.corpus import wordnet
    from nltk.translate.meteor_score import meteor_score

    try:
        wordnet.ensure_loaded()
    except LookupError:
        raise ImportError("no WordNet data", name="nltk's WordNet data (or the METEOR 1.5 jar)") from None
    tok = Tokenizer13a()
    return 100.0 * sum(meteor_score([tok(r).split() for r in rs], tok(h).split()) for h, rs in zip(hyps, refs)) / len(hyps)


def _optional(name: str, fn, out: dict, *args) -> None:
    """out[name] = fn(*args), or the reason in out["unavailable"] when its package is missing."""
    try:
        out[name] = fn(*args)
    except ImportError as e:
        out["unavailable"][name] = f"needs {e.name}, which is not installed"


def sacrebleu_scores(hyps: list[str], refs: list[list[str]], lowercase: bool = False) -> dict:
    """{bleu, chrf, ter, signatures}: sacrebleu corpus scores on the raw strings, 0-100."""
    if len(hyps) != len(refs) or not hyps:
        raise ValueError(f"need one reference list per hypothesis and at least one item; got {len(hyps)} vs {len(refs)}")
    streams = reference_streams(refs)
    bleu, chrf, ter = BLEU(lowercase=lowercase), CHRF(lowercase=lowercase), TER(case_sensitive=not lowercase)
    return {
        "bleu": bleu.corpus_score(hyps, streams).score,
        "chrf": chrf.corpus_score(hyps, streams).score,
        "ter": ter.corpus_score(hyps, streams).score,
        "signatures": {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature()), "ter": str(ter.get_signature())},
    }


def nlg_scores(hyps: list[str], refs: list[list[str]], lowercase: bool = False) -> dict:
    """{bleu, chrf, ter, nist, rouge_l, meteor?, signatures, unavailable} on a 0-100 scale (NIST raw)."""
    out = sacrebleu_scores(hyps, refs, lowercase)
    out["signatures"] |= {"nist": f"mteval NIST n=5, 13a tokens, lowercase={lowercase}", "rouge_l": "rouge_score max-F over refs"}
    out["unavailable"] = {"cider": "see nlg_scorer.score_nlg (pycocoevalcap)"}
    out["nist"] = _nist(hyps, refs, lowercase)
    _optional("rouge_l", _rouge_l, out, hyps, refs)
    _optional("meteor", _meteor, out, hyps, refs)
    return out
