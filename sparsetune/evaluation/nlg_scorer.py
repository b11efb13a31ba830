"""The data-to-text scores of PST Table 3 (and LoRA's GPT-2 tables), computed the way their scorers compute them.

PST runs LoRA's NLG pipeline unchanged (yuchaoli/PST NLG/README.md = microsoft/LoRA examples/NLG):
  - E2E: `measure_scores.py -p` of tuetschek/e2e-metrics on the raw outputs and references.
      BLEU    mteval-v13a tokens, case-insensitive, corpus BLEU-4, closest reference length (ties: the
              shorter), no smoothing: sacrebleu BLEU(tokenize=13a, lowercase=True, smooth=none), which equals
              the scorer's mteval port on the same tokens.
      NIST    the same tokens, mteval NIST n=5 over all references (mteval.py).
      METEOR, ROUGE_L, CIDEr   pycocoevalcap on Stanford PTB tokens (lower-cased, punctuation removed):
              METEOR 1.5 -l en -norm (corpus statistics), ROUGE-L beta 1.2, CIDEr (n=4, sigma=6).
  - DART, WebNLG: `gpt2_decode.py --tokenize --lower --ref_num 6`, then WebNLG GenerationEval
    `eval.py -nr 6 -m bleu,meteor,ter`:
      text    lower-cased, every non-word character a token of its own; only the first 6 references.
      BLEU    multi-bleu-detok.perl (13a tokens, case-sensitive, closest ref length) = sacrebleu as above.
      METEOR  METEOR 1.5 -l en -norm on nltk word tokens (the same jar, through pycocoevalcap).
      TER     per item the lowest sentence TER over its references, averaged, on nltk word tokens
              (GenerationEval uses pyter; we use sacrebleu's tercom TER per sentence), 0-1.
      NIST, ROUGE_L, CIDEr  (not in those papers' DART/WebNLG columns) the E2E definitions on the same text.
Scales: BLEU, METEOR, ROUGE_L 0-100; NIST, CIDEr raw; TER 0-1 (as the papers print it).
METEOR, ROUGE_L and CIDEr need pycocoevalcap and Java (the `nlg` extra); without them they are listed in
"unavailable" with one line saying what to install, and the other scores still come out.
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version

import nltk
import sacrebleu
from nltk.tokenize import NLTKWordTokenizer
from sacrebleu.metrics import BLEU, TER
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from . import coco_caption
from .mteval import nist
from .nlg_metrics import reference_streams

LORA_REF_NUM = 6  # gpt2_decode.py --ref_num 6 in the DART / WebNLG commands of LoRA and PST


@dataclass(frozen=True)
class Profile:
    scorer: str
    text: str                  # what is done to outputs and references before scoring
    lower_and_split: bool      # LoRA's gpt2_decode --tokenize --lower
    max_refs: int | None
    ter: bool
    meteor_tokens: str         # "ptb" (e2e-metrics tokenises first) or "nltk" (GenerationEval)


E2E = Profile("tuetschek/e2e-metrics 1b9c4d8, measure_scores.py -p (as LoRA / PST run it)",
              "whitespace collapsed; all references", False, None, False, "ptb")
GENERATION_EVAL = Profile(
    "microsoft/LoRA examples/NLG (= PST NLG): gpt2_decode.py --tokenize --lower --ref_num 6, then WebNLG/GenerationEval "
    "eval.py -nr 6 -m bleu,meteor,ter",
    f"lower-cased, each non-word character split off (re.split('(\\W)')), first {LORA_REF_NUM} references", True,
    LORA_REF_NUM, True, "nltk")
PROFILES = {"e2e": E2E, "dart": GENERATION_EVAL, "webnlg": GENERATION_EVAL}
KEYS = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr", "TER")


def lower_and_split(text: str) -> str:
    """LoRA gpt2_decode --lower --tokenize: 'Aarhus, Denmark.' -> 'aarhus , denmark .'"""
    return " ".join(re.sub(r"(\W)", r" \1 ", text.lower()).split())


def nltk_words(text: str) -> str:
    """GenerationEval's nltk.word_tokenize, without its punkt sentence split (no data download needed): on text
    already split at every non-word character the tokens are the same."""
    return " ".join(_word_tokenizer().tokenize(text))


@lru_cache(maxsize=1)
def _word_tokenizer():
    return NLTKWordTokenizer()


def mteval_tokens(text: str) -> list[str]:
    return Tokenizer13a()(text.lower()).split()


def prepare(task: str, hyps: list[str], refs: list[list[str]]) -> tuple[list[str], list[list[str]], int]:
    """Checked, normalised outputs and references as the task's scorer sees them; and how many items lost
    references to the reference cap."""
    if task not in PROFILES:
        raise ValueError(f"unknown data-to-text task {task!r}; valid: {', '.join(PROFILES)}")
    if not hyps or len(hyps) != len(refs):
        raise ValueError(f"need one reference group per output and at least one output; got {len(hyps)} outputs "
                         f"and {len(refs)} reference groups")
    profile = PROFILES[task]
    clean = lower_and_split if profile.lower_and_split else (lambda t: " ".join(t.split()))  # one line per text
    out_refs, cut = [], 0
    for i, group in enumerate(refs):
        group = [clean(r) for r in group if r.strip()]
        if not group:
            raise ValueError(f"item {i + 1} has no non-empty reference")
        if profile.max_refs and len(group) > profile.max_refs:
            group, cut = group[:profile.max_refs], cut + 1
        out_refs.append(group)
    return [clean(h) for h in hyps], out_refs, cut


def mean_min_ter(hyps: list[str], refs: list[list[str]]) -> float:
    """Per output, the sentence TER against each reference; the lowest one; averaged; 0-1.
    TER's shift search is slow, so references that cannot win are skipped: a length difference d needs at
    least d insertions or deletions, so TER >= d / len(reference)."""
    ter, best = TER(), []
    for hyp, item_refs in zip(hyps, refs):
        n, score = len(hyp.split()), math.inf
        bounds = sorted((abs(n - len(ref.split())) / max(len(ref.split()), 1) * 100.0, ref) for ref in item_refs)
        for bound, ref in bounds:
            if bound >= score:
                break
            score = min(score, ter.sentence_score(hyp, [ref]).score)
        best.append(score)
    return sum(best) / len(best) / 100.0


def coco_scores(task: str, hyps: list[str], refs: list[list[str]]) -> dict:
    """METEOR, ROUGE_L, CIDEr as the task's scorer computes them (0-100, CIDEr raw); CocoUnavailable if it can't."""
    coco_caption.require()
    flat = [r for rs in refs for r in rs]
    tokens = coco_caption.ptb_tokenize(hyps + flat)
    ptb_hyps, it = tokens[:len(hyps)], iter(tokens[len(hyps):])
    ptb_refs = [[next(it) for _ in rs] for rs in refs]
    if PROFILES[task].meteor_tokens == "nltk":
        meteor = coco_caption.meteor([nltk_words(h) for h in hyps], [[nltk_words(r) for r in rs] for rs in refs])
    else:
        meteor = coco_caption.meteor(ptb_hyps, ptb_refs)
    return {"METEOR": 100.0 * meteor, "ROUGE_L": 100.0 * coco_caption.rouge_l(ptb_hyps, ptb_refs),
            "CIDEr": coco_caption.cider(ptb_hyps, ptb_refs)}


def score_nlg(task: str, hyps: list[str], refs: list[list[str]]) -> dict:
    """{"scores": {BLEU, NIST, METEOR?, ROUGE_L?, CIDEr?, TER (dart/webnlg)}, "unavailable": {metric: why},
    "scorer": what computed them}; hyps[i] is scored against all of refs[i]."""
    hyps, refs, cut = prepare(task, hyps, refs)
    profile = PROFILES[task]
    bleu = BLEU(lowercase=True, tokenize="13a", smooth_method="none", force=True)  # force: DART/WebNLG text is tokenised
    scores = {"BLEU": bleu.corpus_score(hyps, reference_streams(refs)).score,
              "NIST": nist([mteval_tokens(h) for h in hyps], [[mteval_tokens(r) for r in rs] for rs in refs])}
    unavailable = {}
    try:
        scores.update(coco_scores(task, hyps, refs))
    except coco_caption.CocoUnavailable as e:
        unavailable = {m: str(e) for m in coco_caption.METRICS}
    if profile.ter:
        scores["TER"] = mean_min_ter([nltk_words(h) for h in hyps], [[nltk_words(r) for r in rs] for rs in refs])
    return {"scores": {k: scores[k] for k in KEYS if k in scores}, "unavailable": unavailable,
            "scorer": scorer_record(task, str(bleu.get_signature()), cut, len(hyps))}


def scorer_record(task: str, bleu_signature: str, items_cut: int, items: int) -> dict:
    """What produced the scores, for results.json."""
    p = PROFILES[task]
    tokens = {"nltk": "nltk word tokens", "ptb": "Stanford PTB tokens"}[p.meteor_tokens]
    return {
        "task": task, "reference": p.scorer, "text": p.text, "items": items,
        "items_with_references_cut": items_cut,
        "BLEU": f"sacrebleu {bleu_signature}", "NIST": "mteval-v13a NIST n=5 over all references, 13a tokens, lower-cased",
        "METEOR": f"METEOR 1.5 (pycocoevalcap) -l en -norm, corpus statistics, on {tokens}",
        "ROUGE_L": "pycocoevalcap Rouge (beta 1.2) on Stanford PTB tokens",
        "CIDEr": "pycocoevalcap Cider (n=4, sigma=6, IDF over these references) on Stanford PTB tokens",
        **({"TER": "mean over items of the lowest sacrebleu sentence TER over the references, nltk word tokens, 0-1"}
           if p.ter else {}),
        "scales": "BLEU, METEOR, ROUGE_L 0-100; NIST, CIDEr raw" + ("; TER 0-1" if p.ter else ""),
        "versions": versions(),
    }


@lru_cache(maxsize=1)
def versions() -> dict:
    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"sacrebleu": sacrebleu.__version__, "nltk": nltk.__version__, "pycocoevalcap": installed("pycocoevalcap"),
            "java": _java_version()}


def _java_version() -> str | None:
    if shutil.which("java") is None:
        return None
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (out.stderr or out.stdout).strip().splitlines()
    return lines[0] if lines else None
