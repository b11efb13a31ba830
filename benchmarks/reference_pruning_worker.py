"""One pruning run of the Wanda authors' code (github.com/locuslab/wanda, whose lib/ also holds the SparseGPT
authors' algorithm at IST-DASLab/sparsegpt@f5c2500), for benchmarks/bench_pruning.py; runs inside its own venv.

    <env>/bin/python benchmarks/reference_pruning_worker.py --repo ~/src/wanda --model-dir D --calib calib_ids.pt \
        --pruner sparsegpt --pattern 2:4 --sparsity 0.5 --out result_dir

The repo is a user's local clone; nothing of it is copied. Its `lib.prune.prune_wanda` / `prune_sparsegpt` run
unchanged, with three things of its environment supplied from outside:
- calibration: its `get_loaders("c4", ...)` (a hub download) is replaced, in lib.prune's namespace, by the token
  ids the main script drew, one (1, seqlen) sequence per sample as its C4 loader yields them;
- `model.seqlen` and `model.hf_device_map`, which its main.py sets / accelerate's device_map="auto" adds;
- `torch.cuda.synchronize`, which its SparseGPT calls once per matrix, is a no-op on a CPU-only torch.
Only the prune call is timed (wall and this process's CPU seconds), as on our side. Writes <out>/pruned_weights.pt
(the decoder blocks' 2-D weights, fp32, by name) and <out>/result.json (times, versions, settings).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace


def parse_pattern(pattern: str) -> tuple[int, int]:
    """'unstructured' -> (0, 0); '2:4' -> (2, 4): the repo's prune_n of every prune_m are zeroed."""
    if pattern == "unstructured":
        return 0, 0
    n, m = (int(x) for x in pattern.split(":"))
    return n, m


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repo", type=Path, required=True, help="local clone of locuslab/wanda (holds lib/prune.py)")
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--calib", type=Path, required=True, help="torch.save'd (nsamples, seqlen) int64 token ids")
    p.add_argument("--pruner", choices=["wanda", "sparsegpt"], required=True)
    p.add_argument("--pattern", default="unstructured", help="unstructured or N:M (N zeroed of every M)")
    p.add_argument("--sparsity", type=float, required=True)
    p.add_argument("--attention", choices=["eager", "sdpa"], default="eager")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if not (args.repo / "lib" / "prune.py").is_file():
        raise SystemExit(f"--repo {args.repo}: no lib/prune.py there; pass a clone of github.com/locuslab/wanda")

    import torch
    import transformers
    from transformers import AutoModelForCausalLM
    from worker_io import load_calibration_ids, save_decoder_weights, timed

    torch.set_num_threads(args.threads)
    ids = load_calibration_ids(args.calib)
    sys.path.insert(0, str(args.repo.resolve()))
    from lib import prune as reference

    def local_loaders(name, nsamples=128, seed=0, seqlen=2048, tokenizer=None):
        if (nsamples, seqlen) != tuple(ids.shape):
            raise SystemExit(f"the repo asked for {nsamples} x {seqlen} calibration tokens; {args.calib} holds "
                             f"{tuple(ids.shape)}")
        return [(row.unsqueeze(0), None) for row in ids], None

    reference.get_loaders = local_loaders
    if not torch.cuda.is_available():
        torch.cuda.synchronize = lambda *a, **k: None

    model = AutoModelForCausalLM.from_pretrained(args.model_dir, torch_dtype=torch.float32,
                                                 attn_implementation=args.attention).eval()
    model.seqlen = int(ids.shape[1])
    if not hasattr(model, "hf_device_map"):
        model.hf_device_map = {}
    prune_n, prune_m = parse_pattern(args.pattern)
    repo_args = SimpleNamespace(nsamples=int(ids.shape[0]), seed=0, sparsity_ratio=args.sparsity, use_variant=False)
    function = f"prune_{args.pruner}"
    prune = getattr(reference, function)

    # the tokenizer only reaches get_loaders, replaced above
    wall, cpu = timed(lambda: prune(repo_args, model, None, torch.device("cpu"), prune_n=prune_n, prune_m=prune_m))

    save_decoder_weights(model, args.out)
    result = {
        "seconds": wall, "cpu_seconds": cpu, "threads": torch.get_num_threads(),
        "nsamples": int(ids.shape[0]), "seqlen": int(ids.shape[1]), "batch_size": 1,
        "function": f"lib.prune.{function}", "prune_n": prune_n, "prune_m": prune_m,
        "sparsity_ratio": args.sparsity, "attention": args.attention,
        "rope_theta": getattr(model.config, "rope_theta", None),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("seconds", "cpu_seconds", "function")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
