"""Score data-to-text outputs as PST Table 3 does (E2E: the E2E challenge scorer; DART / WebNLG: LoRA's
GenerationEval pipeline); prints one JSON object.

    python scripts/score_nlg.py --task e2e --hyp outputs.txt --refs references.txt

--hyp: one output per line. --refs: the E2E scorer's layout, the references of one input on consecutive lines
and inputs separated by one empty line. Keys: BLEU, NIST, METEOR, ROUGE_L, CIDEr, and TER for dart / webnlg
(BLEU, METEOR, ROUGE_L 0-100; NIST, CIDEr raw; TER 0-1). sparsetune/evaluation/nlg_scorer.py says how each is
computed; training runs record the same numbers under metrics.generation in results.json.
METEOR, ROUGE_L and CIDEr need pycocoevalcap and Java (pip install '.[nlg]'); without them one line on stderr
says so and the other scores are printed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsetune.evaluation.nlg_files import read_pair  # noqa: E402
from sparsetune.evaluation.nlg_scorer import PROFILES, score_nlg  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, choices=list(PROFILES), help="which paper scorer to follow")
    ap.add_argument("--hyp", required=True, help="system outputs, one per line")
    ap.add_argument("--refs", required=True, help="references, one group per output, groups separated by an empty line")
    args = ap.parse_args(argv)
    try:
        result = score_nlg(args.task, *read_pair(args.hyp, args.refs))
    except ValueError as e:
        print(f"score_nlg: error: {e}", file=sys.stderr)
        return 2
    reasons = dict.fromkeys(result["unavailable"].values())
    for reason in reasons:  # the same one line for all the metrics it concerns
        print(f"score_nlg: not computed: {reason}", file=sys.stderr)
    cut = result["scorer"]["items_with_references_cut"]
    if cut:
        print(f"score_nlg: note: {cut} of {result['scorer']['items']} inputs have more than "
              f"{PROFILES[args.task].max_refs} references; only the first {PROFILES[args.task].max_refs} are scored, "
              "as in LoRA / PST", file=sys.stderr)
    print(json.dumps(result["scores"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
