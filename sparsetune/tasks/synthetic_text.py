"""Deterministic synthetic sentiment sentences (no external data).

Labels depend on the adjective's polarity, flipped by negation and by contrastive clauses, so a model must
read more than one word: a bag of adjectives is not enough to solve it.
"""
from __future__ import annotations

import random

POSITIVE = ["good", "great", "wonderful", "charming", "brilliant", "delightful", "moving", "clever", "superb", "funny"]
NEGATIVE = ["bad", "dull", "awful", "boring", "clumsy", "tedious", "weak", "messy", "bland", "painful"]
NOUNS = ["film", "movie", "story", "plot", "script", "cast", "ending", "soundtrack", "director", "performance"]
ADVERBS = ["very", "really", "quite", "truly", "rather", "surprisingly", "utterly", ""]
OPENERS = ["the", "this", "that", "overall the", "honestly the", "i thought the"]


def sentence(rng: random.Random) -> tuple[str, int]:
    positive = rng.random() < 0.5
    adj = rng.choice(POSITIVE if positive else NEGATIVE)
    negated = rng.random() < 0.3
    label = int(positive != negated)
    adv = rng.choice(ADVERBS)
    core = f"{rng.choice(OPENERS)} {rng.choice(NOUNS)} was {'not ' if negated else ''}{adv + ' ' if adv else ''}{adj}"
    if rng.random() < 0.3:
        # "X but Y": the clause after "but" decides
        other_pos = rng.random() < 0.5
        other = rng.choice(POSITIVE if other_pos else NEGATIVE)
        core = f"{core} but the {rng.choice(NOUNS)} was {other}"
        label = int(other_pos)
    return core + " .", label


def make_split(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [dict(zip(("sentence", "label"), sentence(rng))) for _ in range(n)]


def corpus_sentences() -> list[str]:
    return [r["sentence"] for r in make_split(400, 12345)]
