"""One llm-compressor oneshot pruning run, for benchmarks/bench_pruning.py; runs inside llm-compressor's own venv.

    <env>/bin/python benchmarks/llmcompressor_worker.py --model-dir D --calib calib_ids.pt --pruner wanda \
        --mask-structure 2:4 --sparsity 0.5 --out result_dir

It imports nothing from sparsetune (that env has llm-compressor's transformers pin, not ours). The calibration
token ids come from the main script as an (nsamples, seqlen) int64 tensor and reach oneshot as a ready DataLoader,
so llm-compressor neither tokenizes nor shuffles nor truncates: both sides see exactly the same sequences.
Only `oneshot(...)` is timed (wall and this process's CPU seconds): model loading and saving are outside the clock,
as they are on our side. Writes <out>/pruned_weights.pt (the decoder blocks' 2-D weights, fp32, by name) and
<out>/result.json (times, versions, the modifier's settings).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

# llm-compressor's documented way to prune every Linear inside the decoder blocks (its examples' targets);
# the LM head and embeddings are outside the blocks, as on our side
DECODER_BLOCKS = r"re:model\.layers\.\d+$"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--calib", type=Path, required=True, help="torch.save'd (nsamples, seqlen) int64 token ids")
    p.add_argument("--pruner", choices=["wanda", "sparsegpt"], required=True)
    p.add_argument("--mask-structure", default="0:0", help="llm-compressor's N:M = N pruned of M; 0:0 = unstructured")
    p.add_argument("--sparsity", type=float, required=True)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--percdamp", type=float, default=0.01, help="SparseGPT dampening_frac")
    p.add_argument("--blocksize", type=int, default=128, help="SparseGPT block_size")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    import llmcompressor
    import torch
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier
    from torch.utils.data import DataLoader
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from worker_io import load_calibration_ids, save_decoder_weights, timed

    torch.set_num_threads(args.threads)
    ids = load_calibration_ids(args.calib)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)  # oneshot wants a processor even for ready ids
    rows = [{"input_ids": r, "attention_mask": torch.ones_like(r)} for r in ids]
    loader = DataLoader(rows, batch_size=args.batch_size, shuffle=False)
    common = {"sparsity": args.sparsity, "mask_structure": args.mask_structure, "targets": [DECODER_BLOCKS]}
    if args.pruner == "wanda":
        modifier = WandaPruningModifier(**common)
    else:
        modifier = SparseGPTModifier(**common, block_size=args.blocksize, dampening_frac=args.percdamp)

    wall, cpu = timed(lambda: oneshot(
        model=model, processor=tokenizer, dataset=loader, recipe=modifier, num_calibration_samples=ids.shape[0],
        max_seq_length=ids.shape[1], batch_size=args.batch_size, shuffle_calibration_samples=False,
        pipeline="sequential"))

    save_decoder_weights(model, args.out)
    import compressed_tensors
    import transformers

    result = {
        "seconds": wall, "cpu_seconds": cpu, "threads": torch.get_num_threads(),
        "nsamples": int(ids.shape[0]), "seqlen": int(ids.shape[1]), "batch_size": args.batch_size,
        "modifier": type(modifier).__name__,
        "modifier_args": modifier.model_dump(include={"sparsity", "mask_structure", "targets", "ignore", "block_size",
                                                       "dampening_frac"}),
        "versions": {"llmcompressor": llmcompressor.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "compressed_tensors": compressed_tensors.__version__},
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("seconds", "cpu_seconds", "modifier")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
