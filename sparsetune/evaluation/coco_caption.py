"""METEOR 1.5, ROUGE-L, CIDEr and the PTB tokenizer from pycocoevalcap (the optional `nlg` extra), which run
the MS-COCO caption code that the E2E scorer (tuetschek/e2e-metrics) bundles: same classes, same jars.

pycocoevalcap's METEOR and PTB tokenizer are Java programs. Without the package or a `java` on PATH every
function here raises CocoUnavailable with one line that says what to install; the callers report the other
metrics anyway. Scores come back on the package's own scale (0-1; CIDEr raw).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from functools import lru_cache
from importlib.util import find_spec

INSTALL = "pip install '.[nlg]' (pycocoevalcap==1.2) and a Java runtime (e.g. apt-get install default-jre-headless)"
METRICS = ("METEOR", "ROUGE_L", "CIDEr")


class CocoUnavailable(RuntimeError):
    """pycocoevalcap or Java is missing or failed; the message is one line."""


def missing() -> str | None:
    """Why METEOR / ROUGE_L / CIDEr cannot be computed here, or None."""
    lacks = [name for name, ok in (("pycocoevalcap", find_spec("pycocoevalcap") is not None),
                                   ("java", shutil.which("java") is not None)) if not ok]
    if not lacks:
        return None
    return f"{', '.join(METRICS)} need pycocoevalcap and Java ({' and '.join(lacks)} not found): {INSTALL}"


def require() -> None:
    reason = missing()
    if reason:
        raise CocoUnavailable(reason)


@contextlib.contextmanager
def java_stderr(what: str):
    """Keep the Java tools' progress lines off our stderr; a failure becomes one line with their last words."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except (OSError, ValueError, AssertionError, KeyError) as e:  # a dead or garbled Java process
            log.seek(0)
            last = [line for line in log.read().decode(errors="replace").splitlines() if line.strip()][-1:]
            said = " ".join(str(e).split()) + ("; java: " + last[0].strip() if last else "")
            raise CocoUnavailable(f"{what} failed ({type(e).__name__}: {said})") from None
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def ptb_tokenize(texts: list[str]) -> list[str]:
    """Stanford PTB tokens, lower-cased, punctuation tokens removed (pycocoevalcap's PTBTokenizer), one Java run."""
    require()
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    with java_stderr("the PTB tokenizer (java)"):
        out = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
        return [out[i][0] for i in range(len(texts))]


@lru_cache(maxsize=1)
def _meteor():
    """One METEOR 1.5 process per Python process: it takes seconds to load its paraphrase table."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def _as_coco(hyps: list[str], refs: list[list[str]]) -> tuple[dict, dict]:
    return {i: list(r) for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)}


def meteor(hyps: list[str], refs: list[list[str]]) -> float:
    """METEOR 1.5 (-l en -norm), statistics aggregated over the corpus by the jar; 0-1."""
    require()
    try:
        with java_stderr("METEOR 1.5 (java)"):
            return float(_meteor().compute_score(*_as_coco(hyps, refs))[0])
    except CocoUnavailable:
        _meteor.cache_clear()  # the next call starts a fresh process
        raise


def rouge_l(hyps: list[str], refs: list[list[str]]) -> float:
    """ROUGE-L F (beta 1.2) from the best precision and best recall over the references, averaged; 0-1."""
    require()
    from pycocoevalcap.rouge.rouge import Rouge

    return float(Rouge().compute_score(*_as_coco(hyps, refs))[0])


def cider(hyps: list[str], refs: list[list[str]]) -> float:
    """CIDEr (pycocoevalcap's: n=4, sigma=6, IDF from this corpus's references); raw scale (0-10)."""
    require()
    from pycocoevalcap.cider.cider import Cider

    return float(Cider().compute_score(*_as_coco(hyps, refs))[0])
