"""One-shot post-training pruning of a causal LM and its WikiText-2 perplexity (Wanda/SparseGPT table form).

    python scripts/prune_ppl.py --model smollm2-135m --data ../shared/data --out outputs/table-spp-ppl

For each pruner (dense, magnitude, wanda, sparsegpt, dsnot) and pattern (unstructured 50 %, 2:4) it prunes a fresh
copy of the model, measures the exact sparsity of the target matrices, evaluates token-level perplexity on
the WikiText-2 test text (joined with blank lines, fixed-length chunks), writes one results.json per cell
with every setting (calibration source/count/length/seed, eval seqlen/chunks) and prints the table.
dsnot refines a base mask (--dsnot-base, default wanda) on the model config's attention_modules
(--dsnot-layers attention, the reference's skip_layer=mlp) or on every target (all); its record holds the
swaps per matrix.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help="a conf/model option")
    ap.add_argument("--model-path", help="local model dir (model.path)")
    ap.add_argument("--data", required=True, help="data root holding wikitext-2-raw/ and alpaca/")
    ap.add_argument("--wikitext", help="WikiText-2 test file (default <data>/wikitext-2-raw/test.hf_rows.txt)")
    ap.add_argument("--calibration", help="calibration text file (default <data>/alpaca/alpaca_tiny.json)")
    ap.add_argument("--pruners", nargs="+", default=["dense", "magnitude", "wanda", "sparsegpt"])
    ap.add_argument("--patterns", nargs="+", default=["unstructured", "2:4"])
    ap.add_argument("--sparsity", type=float, default=0.5, help="for the unstructured pattern")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--calib-seqlen", type=int, default=256)
    ap.add_argument("--seqlen", type=int, default=512, help="evaluation chunk length")
    ap.add_argument("--max-chunks", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dsnot-base", default="wanda", help="dsnot's initial mask: wanda | sparsegpt | magnitude")
    ap.add_argument("--dsnot-layers", default="attention", help="matrices dsnot refines: attention | all")
    ap.add_argument("--dsnot-same-sign", choices=["null", "true", "false"], default="null",
                    help="dsnot sign check: null = the reference's (off unstructured, on N:M) | true | false")
    ap.add_argument("--out", default="outputs/table-spp-ppl")
    args = ap.parse_args()
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(var, "1")

    import torch
    from hydra import compose, initialize_config_dir

    import sparsetune.schema
    from sparsetune import models, records
    from sparsetune.evaluation.perplexity import file_perplexity
    from sparsetune.masks import sparsity_of
    from sparsetune.pruning import CalibrationSettings, DSnoTSettings, PruneSpec, calibration_samples, prune_model
    from sparsetune.targets import find_targets

    torch.set_num_threads(args.threads)
    sparsetune.schema.register()
    overrides = [f"model={args.model}", "task=alpaca"] + ([f"model.path={args.model_path}"] if args.model_path else [])
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    dsnot = None
    if "dsnot" in args.pruners:  # checked before any model loads
        same_sign = {"null": None, "true": True, "false": False}[args.dsnot_same_sign]
        dsnot = DSnoTSettings(base=args.dsnot_base, layers=args.dsnot_layers, same_sign=same_sign,
                              attention_modules=tuple(cfg.model.get("attention_modules") or ()))
    wiki = args.wikitext or str(Path(args.data) / "wikitext-2-raw" / "test.hf_rows.txt")
    calib = CalibrationSettings(source=args.calibration or str(Path(args.data) / "alpaca" / "alpaca_tiny.json"),
                                nsamples=args.nsamples, seqlen=args.calib_seqlen, seed=0, batch_size=8)
    rows = []
    for pattern in args.patterns:
        for pruner in args.pruners:
            if pruner == "dense" and pattern != args.patterns[0]:
                continue
            model, tok, info = models.load(cfg)
            model.eval()
            t0 = time.perf_counter()
            rec = {"status": "completed", "model": info, "pruner": pruner, "pattern": pattern}
            targets = find_targets(model, cfg.model.target_modules)
            if pruner != "dense":
                samples = calibration_samples(calib, tok) if pruner != "magnitude" else None
                spec = PruneSpec(pruner, args.sparsity if pattern == "unstructured" else None, pattern,
                                 dsnot=dsnot if pruner == "dsnot" else None)
                res = prune_model(model, spec, targets, cfg.model.decoder_layers, samples, calib.batch_size)
                rec["prune"] = res.record()
                rec["calibration"] = calib.record() if samples is not None else None
            zeros = sum(int((m.weight == 0).sum()) for m in targets.values())
            rec["sparsity"] = {"achieved": zeros / sum(m.weight.numel() for m in targets.values()),
                               "per_layer": {n: sparsity_of(m.weight) for n, m in targets.items()}}
            ppl = file_perplexity(model, tok, wiki, seqlen=args.seqlen, max_chunks=args.max_chunks, batch_size=4)
            rec["metrics"] = {"wikitext2_ppl": ppl["perplexity"], "perplexity_settings": ppl}
            rec["timing"] = {"seconds": time.perf_counter() - t0}
            rec["env"] = records.env_record(0, "cpu")
            records.write_results(Path(args.out) / f"{pruner}_{pattern.replace(':', '-')}", rec)
            rows.append((pruner, pattern, rec["sparsity"]["achieved"], ppl["perplexity"]))
            swaps = f" swaps={rec['prune']['dsnot_swaps']['total']}" if pruner == "dsnot" else ""
            print(f"{pruner:<10} {pattern:<13} sparsity={rows[-1][2]:.4f} ppl={rows[-1][3]:.2f}{swaps}", flush=True)
    print(f"\n| pruner | pattern | sparsity | WikiText-2 ppl (seqlen {args.seqlen}, {args.max_chunks} chunks) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.4f} | {r[3]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
