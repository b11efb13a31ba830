"""Pruning time, masks and perplexity: our Wanda / SparseGPT against llm-compressor's and the reference repos', on the
same calibration data.

    python benchmarks/bench_pruning.py                         # SmolLM2-135M, 32 x 512 Alpaca tokens, 50 % and 2:4
    python benchmarks/bench_pruning.py --paper                 # the papers' 128 x 2048 calibration
    python benchmarks/bench_pruning.py --reference-repo ~/src/wanda   # also the Wanda authors' code (a local clone)
    python benchmarks/bench_pruning.py --pruners wanda --patterns 2:4 --threads 2
    python benchmarks/bench_pruning.py --skip-llmcompressor    # our side only (no venv, no pip)

The embedded model is loaded as the repo does (conf/model/<name>.yaml) and saved with save_pretrained into a work
dir (config.json also gets the pre-5.0 rope_theta key, so older transformers build the same rotary embedding); every
side loads that dir in fp32. Calibration: `--nsamples` windows of `--seqlen` tokens drawn with a fixed seed from a
local text file (sparsetune.pruning.calibration_samples), saved as one int64 tensor that every side reads, so they
calibrate on identical ids. Each other side runs in a throwaway venv of its own (benchmarks/bench_env.py: created
on first use, reused after) through a worker script that imports nothing of ours:
- llm-compressor (benchmarks/llmcompressor_worker.py): oneshot with WandaPruningModifier / SparseGPTModifier on
  every Linear of the decoder blocks (the same 7 matrices per block as our target_modules), mask_structure "0:0"
  (unstructured) or "2:4", SparseGPT block_size 128 and dampening 0.01 as ours, the sequential pipeline (block by
  block, each block's pruned outputs feed the next, as ours). llm-compressor forces eager attention while
  calibrating; our side uses `--attention` (default eager too, so both compute the same block outputs; sdpa is the
  model's default and our pipeline's, faster on CPU).
- the reference repo (`--reference-repo`, a clone of github.com/locuslab/wanda; benchmarks/reference_pruning_worker.py):
  its own lib/prune.py prune_wanda / prune_sparsegpt (the latter is the SparseGPT authors' code at
  IST-DASLab/sparsegpt@f5c2500, as the Wanda paper ran it), unchanged, under transformers 4.44.2
  (`--reference-transformers`), with its C4 hub loader replaced by the same ids, one sequence per forward as it
  does, and `--attention` as ours.
The first block's masks agree exactly; later ones drift apart as fp32 rounding differences (another transformers
release, running-mean statistics) flip near-tied choices and propagate through the pruned blocks, most for
SparseGPT, whose adaptive masks and weight updates follow every earlier column (SparseGPT unstructured also differs
by design: see sparsetune/pruning/sparsegpt.py).

Timed: the pruning call only (our prune_model; their oneshot / prune_*), wall and CPU seconds of the process, the
same torch thread count; loading, tokenizing and saving are outside. Then, in this env: achieved sparsity of the
target matrices, mask agreement (per matrix: shared zero positions / our zero positions; overall the same over all
matrices, and the lowest matrix) and WikiText-2 token perplexity (sparsetune.evaluation.perplexity, --eval-seqlen
chunks, first --max-chunks) of the dense model and of every pruned one.
Last lines: `<pruner> time ours/<side>: X.XX` per side and pruner (wall seconds summed over the patterns run), then
the perplexities side by side.
If a side's env cannot be installed or its run fails, the script stops with exit status 2 and says which step failed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PRUNERS = ("wanda", "sparsegpt")
PATTERNS = ("unstructured", "2:4")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    data = ROOT.parent / "shared" / "data"
    p.add_argument("--model", default="smollm2-135m", help="a causal-LM conf/model option with decoder_layers")
    p.add_argument("--data", type=Path, default=data, help=f"data root (default {data})")
    p.add_argument("--calib", type=Path, help="calibration text: .json/.jsonl records or a .txt / .hf_rows.txt file "
                                              "(default <data>/alpaca/alpaca_tiny.json)")
    p.add_argument("--text-field", default="text", help="record field of a .json/.jsonl --calib")
    p.add_argument("--wikitext", type=Path, help="perplexity text (default <data>/wikitext-2-raw/test.hf_rows.txt)")
    p.add_argument("--nsamples", type=positive_int, default=32, help="calibration sequences (papers: 128)")
    p.add_argument("--seqlen", type=positive_int, default=512, help="tokens per calibration sequence (papers: 2048)")
    p.add_argument("--paper", action="store_true", help="the papers' calibration: --nsamples 128 --seqlen 2048")
    p.add_argument("--seed", type=int, default=0, help="calibration sampling seed")
    p.add_argument("--batch-size", type=positive_int, default=8, help="calibration sequences per forward, both sides")
    p.add_argument("--pruners", nargs="+", default=list(PRUNERS), help=f"any of {', '.join(PRUNERS)}")
    p.add_argument("--patterns", nargs="+", default=list(PATTERNS), help=f"any of {', '.join(PATTERNS)}")
    p.add_argument("--sparsity", type=float, default=0.5, help="for the unstructured pattern")
    p.add_argument("--eval-seqlen", type=positive_int, default=512, help="perplexity chunk length")
    p.add_argument("--max-chunks", type=positive_int, default=16, help="perplexity chunks scored")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads on both sides")
    p.add_argument("--attention", choices=["eager", "sdpa"], default="eager",
                   help="our side's attention (pruning and every perplexity): eager = what llm-compressor forces while "
                        "calibrating, so both sides compute the same block outputs; sdpa = the model's default")
    p.add_argument("--env-dir", type=Path, help="llm-compressor venv (default $SPARSETUNE_CACHE/llmcompressor-venv); "
                                                "created when missing, reused when present")
    p.add_argument("--llmcompressor", default="llmcompressor", help="pip requirement to install (e.g. llmcompressor==0.14.0.1)")
    p.add_argument("--pip-arg", action="append", default=[], help="extra pip install argument (repeatable)")
    p.add_argument("--skip-llmcompressor", action="store_true", help="leave llm-compressor out")
    p.add_argument("--reference-repo", type=Path, help="a local clone of github.com/locuslab/wanda: also run its "
                                                        "lib/prune.py (Wanda, and SparseGPT as the SparseGPT authors "
                                                        "wrote it) in an env of its own")
    p.add_argument("--reference-transformers", default="transformers==4.44.2",
                   help="transformers for the reference env: its decoder-layer calls (hidden states, attention_mask, "
                        "position_ids) predate 4.48's required position_embeddings")
    p.add_argument("--reference-env-dir", type=Path, help="the reference venv (default "
                                                          "$SPARSETUNE_CACHE/wanda-reference-venv)")
    p.add_argument("--work-dir", type=Path, help="keep the model copy, calibration ids and llm-compressor outputs here")
    p.add_argument("--json", type=Path, help="write every figure here")
    args = p.parse_args(argv)
    if args.paper:
        args.nsamples, args.seqlen = 128, 2048
    bad = [x for x in args.pruners if x not in PRUNERS]
    if bad:
        p.error(f"--pruners {' '.join(bad)}: not valid; valid: {', '.join(PRUNERS)}")
    bad = [x for x in args.patterns if x not in PATTERNS]
    if bad:
        p.error(f"--patterns {' '.join(bad)}: not valid; valid: {', '.join(PATTERNS)}")
    if not 0 < args.sparsity < 1:
        p.error(f"--sparsity must be in (0, 1), got {args.sparsity}")
    if args.reference_repo and not (args.reference_repo / "lib" / "prune.py").is_file():
        p.error(f"--reference-repo {args.reference_repo}: no lib/prune.py there (clone github.com/locuslab/wanda)")
    args.calib = args.calib or args.data / "alpaca" / "alpaca_tiny.json"
    args.wikitext = args.wikitext or args.data / "wikitext-2-raw" / "test.hf_rows.txt"
    for flag, path in (("--calib", args.calib), ("--wikitext", args.wikitext)):
        if not Path(path).is_file():
            p.error(f"{flag} {path}: no such file (pass --data <dir> or {flag} <file>)")
    return args


# ---- masks ---------------------------------------------------------------------------------------
def zero_masks(model, names) -> dict:
    modules = dict(model.named_modules())
    return {n: (modules[n].weight.detach() == 0) for n in names}


def sparsity_of_masks(zeros: dict) -> float:
    return sum(int(z.sum()) for z in zeros.values()) / max(sum(z.numel() for z in zeros.values()), 1)


def mask_agreement(ours: dict, theirs: dict) -> dict:
    """Per matrix: zero positions both share / our zero positions; overall the same summed over matrices."""
    if set(ours) != set(theirs):
        raise ValueError(f"the two sides pruned different matrices: only ours {sorted(set(ours) - set(theirs))[:3]}, "
                         f"only theirs {sorted(set(theirs) - set(ours))[:3]}")
    per, shared_total, ours_total = {}, 0, 0
    for name, z in ours.items():
        shared, own = int((z & theirs[name]).sum()), int(z.sum())
        per[name] = shared / own if own else 1.0
        shared_total, ours_total = shared_total + shared, ours_total + own
    lowest = min(per, key=per.get)
    return {"overall": shared_total / ours_total if ours_total else 1.0, "lowest": per[lowest], "lowest_matrix": lowest,
            "per_matrix": per}


# ---- the two sides -------------------------------------------------------------------------------
def load_model(model_dir: Path, attention: str):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attention).eval()


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def prune_ours(model_dir: Path, cfg, pruner: str, pattern: str, args, samples) -> tuple[object, dict]:
    from sparsetune.pruning import PruneSpec, prune_model
    from sparsetune.targets import find_targets

    model = load_model(model_dir, args.attention)
    targets = find_targets(model, cfg.model.target_modules, cfg.model.get("exclude_modules", []) or [])
    spec = PruneSpec(pruner, args.sparsity if pattern == "unstructured" else None, pattern)
    wall0, cpu0 = clocks()
    prune_model(model, spec, targets, cfg.model.decoder_layers, samples, args.batch_size)
    wall1, cpu1 = clocks()
    return model, {"seconds": wall1 - wall0, "cpu_seconds": cpu1 - cpu0, "targets": sorted(targets)}


SIDES = {"llmcompressor": "llm-compressor", "reference": "the Wanda repo"}
WORKERS = {"llmcompressor": HERE / "llmcompressor_worker.py", "reference": HERE / "reference_pruning_worker.py"}


def worker_args(side: str, model_dir: Path, calib_path: Path, pruner: str, pattern: str, args) -> list[str]:
    common = ["--model-dir", str(model_dir), "--calib", str(calib_path), "--pruner", pruner]
    sparsity = str(args.sparsity if pattern == "unstructured" else 0.5)
    if side == "llmcompressor":
        # llm-compressor's mask_structure N:M prunes N of every M; 2:4 keeps 2 of 4 either way
        structure = "0:0" if pattern == "unstructured" else pattern
        return [*common, "--mask-structure", structure, "--sparsity", sparsity, "--batch-size", str(args.batch_size)]
    return [*common, "--repo", str(args.reference_repo), "--pattern", pattern, "--sparsity", sparsity,
            "--attention", args.attention]


def prune_other(side: str, python: Path, model_dir: Path, calib_path: Path, out_dir: Path, pruner: str, pattern: str,
                args, target_names) -> tuple[object, dict]:
    """Prune with another implementation in its own env; our model class with its pruned weights, and its record."""
    import torch
    from bench_env import run_worker

    result = run_worker(python, WORKERS[side], worker_args(side, model_dir, calib_path, pruner, pattern, args), out_dir,
                        args.threads, label=f"{SIDES[side]} run")
    weights = torch.load(out_dir / "pruned_weights.pt")
    model = load_model(model_dir, args.attention)
    params = dict(model.named_parameters())
    missing = [n for n in target_names if n + ".weight" not in weights]
    if missing:
        raise RuntimeError(f"{SIDES[side]}'s output lacks {len(missing)} target matrices, e.g. {missing[:3]}")
    with torch.no_grad():
        for name, w in weights.items():
            params[name].copy_(w)
    (out_dir / "pruned_weights.pt").unlink()  # ~0.4 GB per run
    return model, result


def write_legacy_rope(model_dir: Path) -> float | None:
    """Add the pre-5.0 `rope_theta` / `rope_scaling` keys beside transformers 5's `rope_parameters` in config.json,
    so an env with an older transformers (the Wanda repo's) builds the same rotary embedding instead of silently
    using its default base 10,000. Returns the theta written (None: the config has no rope_parameters)."""
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    rope = config.get("rope_parameters")
    if not isinstance(rope, dict) or "rope_theta" not in rope:
        return config.get("rope_theta")
    config["rope_theta"] = rope["rope_theta"]
    if rope.get("rope_type", "default") != "default":
        config["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    path.write_text(json.dumps(config, indent=2))
    return rope["rope_theta"]


def perplexity(model, eval_ids, args) -> float:
    from sparsetune.evaluation.perplexity import token_perplexity

    return token_perplexity(model, eval_ids, args.eval_seqlen, args.max_chunks, batch_size=4)["perplexity"]


# ---- report --------------------------------------------------------------------------------------
def print_report(rows: list[dict], dense_ppl: float, args, sides: list[str]) -> None:
    print(f"\n{args.model} pruning, {args.nsamples} x {args.seqlen} calibration tokens, batch {args.batch_size}, "
          f"{args.threads} thread(s), our attention {args.attention}; WikiText-2 ppl at seqlen {args.eval_seqlen}, "
          f"{args.max_chunks} chunks; dense ppl {dense_ppl:.2f}")
    head = "| pruner | pattern | ours s (CPU s) | sparsity | ppl |"
    for side in sides:
        head += f" {SIDES[side]} s (CPU s) | sparsity | ppl | time ours/theirs | mask agreement (lowest) |"
    print(head + "\n|" + "---|" * (head.count("|") - 1))
    for r in rows:
        o = r["ours"]
        line = (f"| {r['pruner']} | {r['pattern']} | {o['seconds']:.1f} ({o['cpu_seconds']:.1f}) | {o['sparsity']:.4f} "
                f"| {o['ppl']:.2f} |")
        for side in sides:
            t, a = r[side], r[side]["agreement"]
            line += (f" {t['seconds']:.1f} ({t['cpu_seconds']:.1f}) | {t['sparsity']:.4f} | {t['ppl']:.2f} | "
                     f"{o['seconds'] / t['seconds']:.2f} | {a['overall']:.4f} ({a['lowest']:.4f}) |")
        print(line)
    if not sides:
        return
    print()
    for side in sides:
        for pruner in args.pruners:
            mine = [r for r in rows if r["pruner"] == pruner]
            ours = sum(r["ours"]["seconds"] for r in mine)
            theirs = sum(r[side]["seconds"] for r in mine)
            cpu = sum(r["ours"]["cpu_seconds"] for r in mine) / sum(r[side]["cpu_seconds"] for r in mine)
            print(f"{pruner} time ours/{side}: {ours / theirs:.2f}   (CPU time {cpu:.2f}; {', '.join(args.patterns)})")
    for r in rows:
        theirs = " / ".join(f"{r[side]['ppl']:.2f}" for side in sides)
        print(f"{r['pruner']} {r['pattern']} perplexity ours / {' / '.join(sides)}: {r['ours']['ppl']:.2f} / {theirs}"
              f"   (dense {dense_ppl:.2f})")


def set_up_sides(args, torch_version: str) -> dict:
    """side -> its env's python, installed first so a failure stops us before any long run (BenchEnvError)."""
    from bench_env import default_env_dir, ensure_env

    pythons = {}
    if not args.skip_llmcompressor:
        pythons["llmcompressor"] = ensure_env(
            args.env_dir or default_env_dir("llmcompressor-venv"), torch_version, [args.llmcompressor],
            ["llmcompressor", "torch", "transformers", "compressed_tensors"], args.pip_arg, label="llm-compressor env")
    if args.reference_repo:
        # lib/data.py imports datasets at module level (its hub loaders, replaced by the worker)
        pythons["reference"] = ensure_env(
            args.reference_env_dir or default_env_dir("wanda-reference-venv"), torch_version,
            [args.reference_transformers, "datasets"], ["torch", "transformers", "datasets"], args.pip_arg,
            label="reference env")
    return pythons


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled")
    import torch
    from bench_env import BenchEnvError
    from hydra import compose, initialize_config_dir

    import sparsetune.schema
    from sparsetune import models
    from sparsetune.evaluation.perplexity import read_texts
    from sparsetune.pruning import CalibrationSettings, calibration_samples

    torch.set_num_threads(args.threads)
    sparsetune.schema.register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={args.model}", "task=alpaca"])
    if not cfg.model.get("decoder_layers"):
        print(f"--model {args.model}: its config has no decoder_layers; Wanda/SparseGPT need a decoder LM", file=sys.stderr)
        return 2
    try:
        pythons = set_up_sides(args, torch.__version__)
    except BenchEnvError as e:
        print(f"bench_pruning: a comparison env could not be set up: {e}", file=sys.stderr)
        return 2
    sides = list(pythons)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs", flush=True)

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_pruning_"))
    work.mkdir(parents=True, exist_ok=True)
    rows, record = [], {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    if args.reference_repo:
        record["reference_repo_commit"] = git_commit(args.reference_repo)
    try:
        model, tok, info = models.load(cfg)
        model_dir = work / "model"
        model.save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        del model
        rope_theta = write_legacy_rope(model_dir)
        calib = CalibrationSettings(source=str(args.calib), nsamples=args.nsamples, seqlen=args.seqlen, seed=args.seed,
                                    text_field=args.text_field, batch_size=args.batch_size)
        samples = calibration_samples(calib, tok)
        calib_path = work / "calib_ids.pt"
        torch.save(samples, calib_path)
        eval_ids = torch.tensor(tok("\n\n".join(read_texts(args.wikitext)))["input_ids"], dtype=torch.long)
        dense_ppl = perplexity(load_model(model_dir, args.attention), eval_ids, args)
        record.update(model=info, calibration=calib.record(), dense_ppl=dense_ppl)
        print(f"dense ppl {dense_ppl:.2f}; calibration {tuple(samples.shape)} from {args.calib}", flush=True)

        for pattern in args.patterns:
            for pruner in args.pruners:
                row = {"pruner": pruner, "pattern": pattern}
                model, ours = prune_ours(model_dir, cfg, pruner, pattern, args, samples)
                ours_zeros = zero_masks(model, ours.pop("targets"))
                ours.update(sparsity=sparsity_of_masks(ours_zeros), ppl=perplexity(model, eval_ids, args))
                row["ours"] = ours
                del model
                print(f"ours          {pruner:<9} {pattern:<12} {ours['seconds']:7.1f} s  sparsity {ours['sparsity']:.4f}  "
                      f"ppl {ours['ppl']:.2f}", flush=True)
                for side, python in pythons.items():
                    try:
                        model, theirs = prune_other(side, python, model_dir, calib_path,
                                                    work / f"{side}-{pruner}-{pattern.replace(':', 'of')}",
                                                    pruner, pattern, args, list(ours_zeros))
                    except BenchEnvError as e:
                        print(f"bench_pruning: {e}", file=sys.stderr)
                        return 2
                    if side == "reference" and theirs.get("rope_theta") != rope_theta:
                        print(f"bench_pruning: the reference env built rope_theta {theirs.get('rope_theta')}, ours "
                              f"{rope_theta}: its transformers reads this config differently", file=sys.stderr)
                        return 2
                    their_zeros = zero_masks(model, list(ours_zeros))
                    theirs.update(sparsity=sparsity_of_masks(their_zeros), ppl=perplexity(model, eval_ids, args),
                                  agreement=mask_agreement(ours_zeros, their_zeros))
                    row[side] = theirs
                    del model, their_zeros
                    print(f"{side:<13} {pruner:<9} {pattern:<12} {theirs['seconds']:7.1f} s  sparsity "
                          f"{theirs['sparsity']:.4f}  ppl {theirs['ppl']:.2f}  mask agreement "
                          f"{theirs['agreement']['overall']:.4f}", flush=True)
                rows.append(row)
        print_report(rows, dense_ppl, args, sides)
        if args.json:
            args.json.write_text(json.dumps({**record, "rows": rows}, indent=1, default=str))
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def git_commit(repo: Path) -> str | None:
    out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or None


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
