"""Step time and peak memory of training methods on one model shape, as ratios against LoRA and full FT.

    python benchmarks/bench_step.py                          # BERT-base shape, batch 8 x 128, CPU
    python benchmarks/bench_step.py --device cuda --steps 30
    python benchmarks/bench_step.py --methods lora pst --model opt-350m
    python benchmarks/bench_step.py --model smollm2-135m --task alpaca --methods lora-all spp spp-naive --baseline lora-all
                                                        # SPP vs LoRA at (nearly) equal trainable parameters

Each method runs in its own process (peak memory is per process) through the same Trainer loop as
train.py, on random weights and random tokens (speed and memory do not depend on the values). Reported:
median seconds per optimizer step after warm-up, the share of the step spent in the method's callbacks
(mask updates, re-selection), and peak memory: CUDA max allocated on GPU; on CPU the peak resident set
above the process's size before the model was built (weights + gradients + optimizer state + activations).
On CPU each method runs twice: timed under the allocator users get, and measured for memory in a second,
shorter run with glibc's mmap threshold fixed so that freed large blocks leave the resident set (that
setting also makes every large allocation fresh memory, which would distort the step times).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_METHODS = ["full", "lora", "magnitude", "movement", "pst", "speft"]
# per-method overrides that make the comparison fair (equal trainable budget for SPEFT vs LoRA r=8)
METHOD_OVERRIDES = {
    "lora": ["method.r=8"],
    "speft": ["method.match_lora_rank=8", "mask_schedule=static", "salience=magnitude"],
    "spp": ["salience=magnitude"],  # the pruner does not change speed or memory of training
    "lora_star": ["salience=magnitude"],
}
# benchmark rows that are a method with other settings: row name -> (method, overrides)
VARIANTS = {"spp-naive": ("spp", ["salience=magnitude", "method.impl=naive"]),
            # LoRA r=8 on every linear (SPP's targets): SPP r=16's trainable count within 5 % on LLaMA shapes
            "lora-all": ("lora", ["method.r=8", "method.targets=all"])}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args) -> dict:
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled")
    import torch
    from datasets import Dataset
    from hydra import compose, initialize_config_dir
    from transformers import TrainerCallback, default_data_collator

    sys.path.insert(0, str(ROOT))
    import sparsetune.schema
    from sparsetune import models
    from sparsetune.methods.base import MethodContext, count_params
    from sparsetune.registry import METHODS
    from sparsetune.training import MethodTrainer, TimingCallback, training_args

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sparsetune.schema.register()
    method_name, method_overrides = VARIANTS.get(args.method, (args.method, METHOD_OVERRIDES.get(args.method, [])))
    hardware = "gpu" if args.device == "cuda" else "cpu"
    overrides = [f"model={args.model}", f"method={method_name}", f"task={args.task}", f"hardware={hardware}",
                 f"train.batch_size={args.batch}", f"train.max_steps={args.steps}", "train.eval_strategy=no", "train.save_steps=100000",
                 "train.logging_steps=100000", *method_overrides, *args.override]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    base_rss = rss_mb()
    model = models.auto_class(cfg.task).from_config(models.arch_config(cfg)).to(args.device)
    vocab = model.config.vocab_size
    n = args.batch * (args.steps + 2)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (n, args.seq), generator=g).tolist()
    labels = ids if cfg.task.kind == "causal_lm" else torch.randint(0, 2, (n,), generator=g).tolist()
    data = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * args.seq] * n, "labels": labels})

    def batches(k, batch_size=None):
        bs = batch_size or cfg.salience.batch_size
        for i in range(k):
            rows = data[i * bs:(i + 1) * bs]
            yield {key: torch.tensor(v, device=args.device) for key, v in rows.items()}

    method = METHODS.get(cfg.method.name)(cfg)
    method.validate(cfg)
    t0 = time.perf_counter()
    model = method.apply(model, MethodContext(cfg=cfg, total_steps=args.steps, batches=batches))
    apply_s = time.perf_counter() - t0

    class Timed(TrainerCallback):
        """Times the method's own callbacks (mask updates etc.) inside each step."""

        def __init__(self, inner):
            self.inner, self.seconds = inner, []

        def __getattribute__(self, name):
            if name.startswith("on_") and hasattr(object.__getattribute__(self, "inner"), name):
                fn = getattr(object.__getattribute__(self, "inner"), name)

                def timed(*a, **kw):
                    t = time.perf_counter()
                    out = fn(*a, **kw)
                    object.__getattribute__(self, "seconds").append((name, time.perf_counter() - t))
                    return out
                return timed
            return object.__getattribute__(self, name)

    timed = [Timed(cb) for cb in method.callbacks()]

    class StepTimes(TimingCallback):
        def __init__(self):
            super().__init__()
            self.each = []

        def on_step_end(self, a, state, control, **kw):
            t = time.perf_counter() - self._t0
            super().on_step_end(a, state, control, **kw)
            self.each.append(t)

    steps = StepTimes()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out_dir = f"/tmp/sparsetune-bench-{os.getpid()}"
    trainer = MethodTrainer(model=model, args=training_args(cfg, out_dir, args.steps), train_dataset=data,
                            data_collator=default_data_collator, callbacks=[*timed, steps], param_groups=method.optimizer_groups(model))
    trainer.train()
    warm = steps.each[args.warmup:] or steps.each
    cb_total = sum(s for t in timed for _, s in t.seconds if _ in ("on_step_begin", "on_optimizer_step", "on_step_end"))
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    return {"method": args.method, "median_step_s": statistics.median(warm), "steps": len(steps.each),
            "method_callback_share": cb_total / max(sum(steps.each), 1e-9), "peak_mb": peak, "apply_s": apply_s,
            "trainable": count_params(model)["trainable"], "device": args.device}


def run_worker(method: str, argv: list[str], **env) -> dict | None:
    cmd = [sys.executable, __file__, "--method", method, *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env})
    line = next((l for l in proc.stdout.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        print(f"{method}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(line[6:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    ap.add_argument("--model", default="bert-base-uncased")
    ap.add_argument("--task", default="glue/sst2", help="glue/sst2 (classification head) or alpaca (causal LM)")
    ap.add_argument("--epoch-examples", type=int, default=67349, help="one epoch for the salience share (SST-2 train)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for every method")
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--baseline", default="lora", help="the row the /LoRA columns divide by (e.g. lora-all)")
    args = ap.parse_args()
    if args.method:  # worker process
        print("BENCH " + json.dumps(worker(args)), flush=True)
        return 0
    rows = []
    for m in args.methods:
        row = run_worker(m, sys.argv[1:])
        if row is not None and args.device == "cpu":
            # a fixed mmap threshold makes glibc return every large freed block, so peak RSS tracks the
            # real peak instead of whatever malloc's dynamic threshold happened to keep
            mem = run_worker(m, [*sys.argv[1:], "--steps", str(args.warmup + 2)], MALLOC_MMAP_THRESHOLD_="65536")
            row = None if mem is None else {**row, "peak_mb": mem["peak_mb"]}
        if row is not None:
            rows.append(row)
    by = {r["method"]: r for r in rows}
    print(f"model={args.model} batch={args.batch}x{args.seq} device={args.device} threads={args.threads} "
          f"steps={args.steps} (median after {args.warmup} warm-up)")
    over = "/LoRA" if args.baseline == "lora" else "/base"
    print(f"{'method':<11}{'trainable':>13}{'s/step':>9}{over:>7}{'/full':>7}{'peak MB':>10}{over:>7}{'/full':>7}{'mask share':>12}")
    for r in rows:
        ratio = lambda key, base, r=r: f"{r[key] / by[base][key]:.2f}" if base in by else "-"
        print(f"{r['method']:<11}{r['trainable']:>13,}{r['median_step_s']:>9.3f}"
              f"{ratio('median_step_s', args.baseline):>7}{ratio('median_step_s', 'full'):>7}"
              f"{r['peak_mb']:>10.0f}{ratio('peak_mb', args.baseline):>7}{ratio('peak_mb', 'full'):>7}{r['method_callback_share']:>11.1%}")
    for r in rows:
        if r["apply_s"] > 1.0:  # salience / one-shot pruning before training
            epoch = args.epoch_examples / args.batch * r["median_step_s"]
            print(f"{r['method']}: {r['apply_s']:.1f}s before training = {r['apply_s'] / epoch:.3%} of one epoch "
                  f"({args.epoch_examples} examples at batch {args.batch})")
    base = by.get(args.baseline)
    for r in rows:
        if base is not None and r is not base:
            print(f"{r['method']} / {args.baseline}: step time ratio {r['median_step_s'] / base['median_step_s']:.2f}, "
                  f"peak memory ratio {r['peak_mb'] / base['peak_mb']:.2f}, trainable ratio {r['trainable'] / base['trainable']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if len(rows) == len(args.methods) else 1


if __name__ == "__main__":
    raise SystemExit(main())
