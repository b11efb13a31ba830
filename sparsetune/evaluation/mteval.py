"""NIST as the E2E challenge scorer computes it (tuetschek/e2e-metrics, metrics/pymteval.py, the Python port of
mteval-v13a that LoRA / PST run with `measure_scores.py -p`). Written here because no maintained package has it:
nltk's corpus_nist scores each hypothesis against its single best reference, mteval against all of them.

Definition (Doddington 2002, mteval-v13a), over a corpus of tokenised hypotheses and their references:
  info(w1..wn) = log2(count(w1..wn-1) / count(w1..wn)), counts over every reference of the corpus
                 (the count of the empty prefix is the total number of reference words);
  NIST = sum_n  sum of info(g) * min(count_hyp(g), max_ref count(g))  /  hypothesis n-grams of order n
         x exp(-beta * ln(L_sys / L_ref)^2) when L_sys < L_ref (beta = -ln 0.5 / ln(1.5)^2),
  with L_ref the sum over items of the mean reference length.
An order with no hypothesis n-gram adds 0 (the port divides by zero there; mteval's Perl counts max(0, len-n+1)).
"""
from __future__ import annotations

import math
from collections import Counter

BETA = -math.log(0.5) / math.log(1.5) ** 2


def ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def nist(hyps: list[list[str]], refs: list[list[list[str]]], max_n: int = 5) -> float:
    """Corpus NIST of tokenised hypotheses against all their tokenised references."""
    ref_counts: Counter = Counter()
    for item_refs in refs:
        for ref in item_refs:
            ref_counts[()] += len(ref)
            for n in range(1, max_n + 1):
                ref_counts.update(ngrams(ref, n))
    hit_info, hyp_ngrams = [0.0] * max_n, [0] * max_n
    sys_len, ref_len = 0, 0.0
    for hyp, item_refs in zip(hyps, refs):
        sys_len += len(hyp)
        ref_len += sum(len(r) for r in item_refs) / len(item_refs)
        for n in range(1, max_n + 1):
            best = Counter()
            for ref in item_refs:
                best |= ngrams(ref, n)  # max count of each n-gram over the references
            hyp_ngrams[n - 1] += max(len(hyp) - n + 1, 0)
            hit_info[n - 1] += sum(math.log2(ref_counts[g[:-1]] / ref_counts[g]) * min(c, best[g])
                                   for g, c in ngrams(hyp, n).items() if g in best)
    score = sum(info / count for info, count in zip(hit_info, hyp_ngrams) if count)
    ratio = sys_len / ref_len if ref_len else 0.0
    if ratio >= 1:
        return score
    return 0.0 if ratio <= 0 else score * math.exp(-BETA * math.log(ratio) ** 2)
