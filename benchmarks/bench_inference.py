"""Dense vs sparsified (sparsetune.sparse_inference) inference on CPU: speed, memory, same outputs.

    python benchmarks/bench_inference.py                      # MiniLM-L6 + SmolLM2-135M at 50 %, 90 %, 2:4 (~5 min)
    python benchmarks/bench_inference.py --model smollm2-135m --make 0.9
    python benchmarks/bench_inference.py --dir outputs/<run>/model          # a run's exported model
    python benchmarks/bench_inference.py --threads 2 --new-tokens 64 --prompt 128

--make SPARSITY|N:M magnitude-prunes the embedded model's target linear layers (conf/model/<name>.yaml
`target_modules`: every per-layer matrix, not embeddings or heads) per matrix, saves it with save_pretrained
like a run's export and loads it back with from_pretrained, as a user would. That model runs twice in one
process, interleaved round by round: dense (the zeros multiplied) and after `sparsify_linears` (layout auto,
timed for the workload: [prompt] + [1] * new_tokens rows for a causal LM, batch*seq for classification).

Workloads: MiniLM-L6 = sequence-classification forward (batch x seq random tokens); SmolLM2-135M = prefill of
a fixed English prompt and greedy decode with the KV cache, one token per step (batch 1). Times are medians
over --repeats rounds after a warm-up round. Checks: logits max abs diff within 1e-4 x max|dense logits|
(float32 sums in another order), and the same greedy tokens; a failed check makes the exit status 1.

Memory, two figures: `weights` = bytes of the model's tensors (parameters + buffers; for sparse layers values
+ int32 indices), exact, because RSS cannot separate two models living in one process; `peak` = that plus
the workload's peak RSS increment (VmHWM after resetting it through /proc/self/clear_refs, minus VmRSS
before the workload, with freed heap returned to the OS first: activations, KV cache, kernel scratch).
RSS growth while loading says little here: from_pretrained maps the safetensors file and pages arrive on
first use. Not included: while sparsify_linears times the layers it holds the sparse copies of all
candidate layers next to the dense model (a transient peak of dense + sparse weights).

The last line is `decode sparse/dense tokens_per_s ratio: X.XX` for the largest sparsity run (n/a when no
causal LM ran).

--device cuda (a GPU machine; never in CI): the same workloads and lines for 2:4 models on an NVIDIA GPU of compute
capability 8.0+, dense vs `sparsetune.semi_structured.semi_structured_linears` (torch.sparse.to_sparse_semi_structured
on every 2:4 nn.Linear whose shape suits the kernel), both in --dtype fp16|bf16. --make defaults to 2:4 there and
takes only N:4 patterns with N <= 2; --dir must hold a 2:4 model. Times wait for the GPU (torch.cuda.synchronize);
memory is the tensors' bytes (packed values + metadata for 2:4 weights) and the workload's peak CUDA allocation
increment. The prefill logits must match within 2e-2 x max|dense logit| (half precision); greedy tokens are compared
and reported, but in fp16/bf16 a near-tie may flip one, so a difference there is not a failure.
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# embedded model -> a task of the right kind (only its head type matters here)
MODEL_TASKS = {"minilm-l6": "synthetic/sentiment", "smollm2-135m": "alpaca"}
PROMPT = ("The history of the city begins with a small settlement on the river, where traders from the north "
          "exchanged furs, salt and iron tools for grain. Over the following centuries the village grew into a "
          "market town with a stone bridge, a church and a council of merchants who kept careful records of every "
          "sale. Those records, preserved in the town archive, describe")
TOLERANCE = 1e-4  # relative to the largest |logit| of the dense model
HALF_TOLERANCE = 2e-2  # the same on CUDA in fp16/bf16: 30 blocks of half-precision sums in another order
DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


def status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> bool:
    """Make VmHWM restart from the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def trim_heap() -> None:
    """Hand freed heap back to the OS (glibc), so the next workload's peak is fresh memory, not reuse."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def tensor_mb(model) -> float:
    import torch

    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if isinstance(t, torch.sparse.SparseSemiStructuredTensor):  # a wrapper: count its packed inner tensors
            for name in t.__tensor_flatten__()[0]:
                inner = getattr(t, name)
                total += inner.numel() * inner.element_size()
            continue
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total / 2**20


def parse_pattern(text: str) -> tuple[str, float, tuple[int, int] | None]:
    """'0.9' -> ('90%', 0.9, None); '2:4' -> ('2:4', 0.5, (2, 4))."""
    if ":" in text:
        from sparsetune.method_schemas import parse_pattern as nm

        try:
            n, m = nm(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text, 1 - n / m, (n, m)
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--make takes a sparsity in (0, 1) or N:M (e.g. 0.9 or 2:4), got {text!r}") from None
    if not 0 < s < 1:
        raise argparse.ArgumentTypeError(f"--make sparsity must be in (0, 1), got {text!r}")
    return f"{s:.0%}", s, None


def make_model_dir(name: str, pattern: tuple, out_dir: Path) -> Path:
    """Magnitude-prune the embedded model's target matrices and save_pretrained it into out_dir."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import sparsetune.schema
    from sparsetune import models
    from sparsetune.masks import nm_mask, topk_mask
    from sparsetune.targets import find_targets, set_weight_out_in, weight_out_in

    sparsetune.schema.register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={name}", f"task={MODEL_TASKS[name]}"])
    torch.manual_seed(0)  # the classification head is newly initialised: the same one for every pattern
    model, tok, _ = models.load(cfg)
    _, sparsity, nm = pattern
    with torch.no_grad():
        for mod in find_targets(model, cfg.model.target_modules).values():
            score = weight_out_in(mod).abs()
            keep = nm_mask(score, *nm) if nm else topk_mask(score, sparsity)
            set_weight_out_in(mod, weight_out_in(mod) * keep)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    del model
    return out_dir


def model_kind(model_dir: Path) -> str:
    config = json.loads((model_dir / "config.json").read_text())
    archs = config.get("architectures") or []
    return "causal_lm" if any(a.endswith("ForCausalLM") for a in archs) else "classification"


# ---- workloads: each returns (wall seconds, CPU seconds of all threads, outputs to compare) ----

def clocks() -> tuple[float, float]:
    import torch

    if torch.cuda.is_initialized():  # GPU work is asynchronous: wait for it before reading the clock
        torch.cuda.synchronize()
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clocks()
    return wall - start[0], cpu - start[1]


def classify(model, inputs):
    start = clocks()
    logits = model(**inputs).logits
    return (*since(start), logits)


def prefill(model, ids):
    start = clocks()
    logits = model(input_ids=ids, use_cache=False).logits
    return (*since(start), logits)


def greedy_decode(model, ids, new_tokens: int):
    """Prefill (not timed), then `new_tokens` one-token steps with the KV cache; times the steps only."""
    import torch

    out = model(input_ids=ids, use_cache=True)
    past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    tokens = [token]
    start = clocks()
    for _ in range(new_tokens):
        out = model(input_ids=token, past_key_values=past, use_cache=True)
        past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        tokens.append(token)
    return (*since(start), torch.cat(tokens, dim=1))


def measure(fn, variants: dict, repeats: int, can_reset: bool, warmup=None, device: str = "cpu") -> dict:
    """Run fn(model) per variant, interleaved, after one warm-up round: median wall and CPU seconds, peak RSS
    increment (on CUDA: peak allocated GPU memory increment). CPU time leaves out the time other processes hold
    the core (with one thread, the steadier ratio)."""
    import torch

    res = {k: {"times": [], "cpu": [], "peak_mb": 0.0, "out": None} for k in variants}
    for model in variants.values():  # warm-up: page faults, MKL / cuSPARSELt set-up, allocator
        (warmup or fn)(model)
    for _ in range(repeats):
        for key, model in variants.items():
            gc.collect()
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated() / 2**20
                seconds, cpu, out = fn(model)
                peak = torch.cuda.max_memory_allocated() / 2**20 - before
            else:
                trim_heap()
                can_reset = reset_peak_rss() and can_reset
                before = status_mb("VmRSS")
                seconds, cpu, out = fn(model)
                peak = status_mb("VmHWM") - before if can_reset else float("nan")
            res[key]["times"].append(seconds)
            res[key]["cpu"].append(cpu)
            res[key]["peak_mb"] = max(res[key]["peak_mb"], peak)
            if res[key]["out"] is None:
                res[key]["out"] = out
    for r in res.values():
        r["seconds"], r["cpu_seconds"] = statistics.median(r["times"]), statistics.median(r["cpu"])
    return res


def logits_check(ref, got, relative: float = TOLERANCE) -> dict:
    ref, got = ref.float(), got.float()
    diff = float((ref - got).abs().max())
    tol = relative * float(ref.abs().max()) + 1e-6
    return {"max_abs_diff": diff, "tol": tol, "ok": diff <= tol}


def nm_fits_2of4(nm: tuple[int, int] | None) -> bool:
    """N:4 with N <= 2 is also 2:4 sparse (at most 2 nonzeros per group of 4), which the GPU kernels take."""
    return nm is not None and nm[1] == 4 and nm[0] <= 2


def reason_kind(reason: str) -> str:
    """The kind of a keep-dense reason, without its per-layer figures."""
    return reason.split(" (")[0].split(": ")[0]


class Not2of4Error(ValueError):
    """--device cuda was given a model in which no linear layer can run 2:4 sparse."""


def convert_for_gpu(model, label: str):
    """semi_structured_linears on a CUDA model; Not2of4Error when no layer can be 2:4 (saying why)."""
    from sparsetune.semi_structured import plan_semi_structured, semi_structured_linears

    if not any(d.layout for d in plan_semi_structured(model)):
        reasons = sorted({reason_kind(d.reason) for d in plan_semi_structured(model)})
        raise Not2of4Error(f"{label}: no linear layer can run 2:4 sparse ({'; '.join(reasons)}); --device cuda needs a "
                         "2:4-pruned model (e.g. --make 2:4, or a run with method.pattern=2:4)")
    return semi_structured_linears(model)


def bench_one(label: str, model_dir: Path, args) -> dict:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    from sparsetune.sparse_inference import sparsify_linears

    kind = model_kind(model_dir)
    cls = AutoModelForCausalLM if kind == "causal_lm" else AutoModelForSequenceClassification
    device = args.device
    dtype = torch.float32 if device == "cpu" else getattr(torch, DTYPES[args.dtype])
    dense = cls.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    if kind == "causal_lm":
        ids = tok(PROMPT, return_tensors="pt").input_ids
        ids = ids.repeat(1, -(-args.prompt // ids.shape[1]))[:, : args.prompt].to(device)
        workload = [args.prompt] + [1] * args.new_tokens
    else:
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(1000, tok.vocab_size, (args.batch, args.seq), generator=g).to(device)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        workload = args.batch * args.seq
    sparse = copy.deepcopy(dense)
    t0 = time.perf_counter()
    with torch.no_grad():
        if device == "cuda":
            report = convert_for_gpu(sparse, label)
        else:
            report = sparsify_linears(sparse, min_sparsity=args.min_sparsity, layout=args.layout, tokens=workload)
    convert_s = time.perf_counter() - t0
    if args.verbose:
        print(report)
    layouts = sorted({d.layout for d in report.converted})
    row = {"label": label, "dir": str(model_dir), "kind": kind, "threads": torch.get_num_threads(),
           "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "dtype": str(dtype),
           "converted": len(report.converted), "considered": len(report.decisions), "layouts": layouts,
           "kept_dense_reasons": sorted({reason_kind(d.reason) for d in report.kept_dense}),
           "convert_s": convert_s, "weights_mb": {"dense": tensor_mb(dense), "sparse": tensor_mb(sparse)},
           "workloads": {}}
    variants = {"dense": dense, "sparse": sparse}
    can_reset = reset_peak_rss()
    with torch.no_grad():
        if kind == "causal_lm":
            jobs = {"prefill": (lambda m: prefill(m, ids), args.prompt, None),
                    "decode": (lambda m: greedy_decode(m, ids, args.new_tokens), args.new_tokens,
                               lambda m: greedy_decode(m, ids, 2))}
        else:
            jobs = {"classify": (lambda m: classify(m, inputs), args.batch * args.seq, None)}
        for name, (fn, n_tokens, warmup) in jobs.items():
            res = measure(fn, variants, args.repeats, can_reset, warmup, device)
            ref, got = res["dense"]["out"], res["sparse"]["out"]
            if name == "decode":
                same = bool(torch.equal(ref, got))
                # half precision on the GPU: a near-tie may flip one greedy token; the prefill logits are the check
                check = {"same_tokens": same, "ok": same or device == "cuda", "tokens": int(got.numel())}
            else:
                check = logits_check(ref, got, TOLERANCE if device == "cpu" else HALF_TOLERANCE)
            row["workloads"][name] = {
                "tokens": n_tokens, "check": check,
                "tokens_per_s": {k: n_tokens / res[k]["seconds"] for k in variants},
                "cpu_seconds": {k: res[k]["cpu_seconds"] for k in variants},
                "peak_rss_increment_mb": {k: res[k]["peak_mb"] for k in variants}}
    del dense, sparse, variants
    gc.collect()
    return row


def print_row(row: dict) -> None:
    w = row["weights_mb"]
    gpu = row.get("device", "cpu") != "cpu"
    print(f"\n== {row['label']}{' on ' + row['device'] if gpu else ''}: {row['converted']}/{row['considered']} linear layers sparse "
          f"({', '.join(row['layouts']) or 'none'}; converted in {row['convert_s']:.1f} s); kept dense because: "
          f"{'; '.join(row['kept_dense_reasons']) or '-'}")
    print(f"   weights {w['dense']:.1f} -> {w['sparse']:.1f} MB ({w['sparse'] / w['dense']:.2f}x)")
    for name, wl in row["workloads"].items():
        tps, peak = wl["tokens_per_s"], wl["peak_rss_increment_mb"]
        total = {k: w[k] + peak[k] for k in tps}
        c = wl["check"]
        cpu_ratio = wl["cpu_seconds"]["dense"] / wl["cpu_seconds"]["sparse"]
        check = (f"same {c['tokens']} greedy tokens: {'yes' if c['same_tokens'] else 'NO'}" if "same_tokens" in c else
                 f"logits max|diff| {c['max_abs_diff']:.1e} (tol {c['tol']:.1e}) {'ok' if c['ok'] else 'MISMATCH'}")
        print(f"   {name:<8} {wl['tokens']:>5} tok  dense {tps['dense']:8.1f} tok/s  sparse {tps['sparse']:8.1f} tok/s  "
              f"speed {tps['sparse'] / tps['dense']:.2f}x{'' if gpu else f' (CPU time {cpu_ratio:.2f}x)'}  "
              f"peak {'CUDA' if gpu else 'RSS'} increment {peak['dense']:.0f}/{peak['sparse']:.0f} MB  "
              f"peak memory {total['sparse'] / total['dense']:.2f}x  {check}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", nargs="+", choices=sorted(MODEL_TASKS), default=["minilm-l6", "smollm2-135m"],
                   help="embedded models for --make")
    p.add_argument("--make", nargs="+", type=parse_pattern, default=None, metavar="SPARSITY|N:M",
                   help="prune the embedded model(s) to these patterns (default: 0.5 0.9 2:4)")
    p.add_argument("--dir", type=Path, help="an exported model dir (a run's model/) instead of --make")
    p.add_argument("--out", type=Path, help="keep the --make model dirs here (default: a temp dir, deleted)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--prompt", type=int, default=64, help="prompt tokens (causal LM)")
    p.add_argument("--new-tokens", type=int, default=32, help="greedy decode steps (causal LM)")
    p.add_argument("--batch", type=int, default=8, help="classification batch")
    p.add_argument("--seq", type=int, default=128, help="classification sequence length")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per workload (median)")
    p.add_argument("--min-sparsity", type=float, default=0.5)
    p.add_argument("--layout", default="auto", help="sparsify_linears layout: auto, csr, bsr (CPU)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: dense vs 2:4 semi-structured sparse on an NVIDIA GPU (2:4 models only)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp16", help="weights and activations on --device cuda")
    p.add_argument("--json", type=Path, help="write all figures here")
    p.add_argument("-v", "--verbose", action="store_true", help="print the per-module sparsify report")
    args = p.parse_args(argv)
    if args.dir is not None and args.make is not None:
        p.error("--dir and --make exclude each other")
    if args.dir is not None and not (args.dir / "config.json").is_file():
        p.error(f"--dir {args.dir}: no config.json there (pass a saved model directory, e.g. <run dir>/model)")
    for flag in ("threads", "prompt", "new_tokens", "batch", "seq", "repeats"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    from sparsetune.sparse_inference import LAYOUTS

    if args.layout not in LAYOUTS:
        p.error(f"--layout {args.layout!r} is not valid; valid: {', '.join(LAYOUTS)}")
    if args.device == "cuda":
        not_24 = [pat[0] for pat in args.make or [] if not nm_fits_2of4(pat[2])]
        if not_24:
            p.error(f"--device cuda benchmarks 2:4 models (torch semi-structured sparsity); --make {' '.join(not_24)} "
                    "is not 2:4: use --make 2:4 (or 1:4)")
        from sparsetune.semi_structured import cuda_problem

        problem = cuda_problem()
        if problem:
            p.error(f"--device cuda: {problem}")
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled")
    import torch

    torch.set_num_threads(args.threads)
    where = f"{torch.cuda.get_device_name()}, {args.dtype}" if args.device == "cuda" else f"{os.cpu_count()} CPUs"
    print(f"torch {torch.__version__}, {args.threads} thread(s), {where}", flush=True)
    rows = []
    if args.dir is not None:
        try:
            rows.append(bench_one(str(args.dir), args.dir, args))
        except Not2of4Error as e:
            print(f"bench_inference: {e}", file=sys.stderr)
            return 2
        rows[-1]["sparsity"] = None
        print_row(rows[-1])
    else:
        default = ("2:4",) if args.device == "cuda" else ("0.5", "0.9", "2:4")
        patterns = args.make or [parse_pattern(x) for x in default]
        with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
            base = args.out or Path(tmp)
            for name in args.model:
                for pattern in patterns:
                    out_dir = base / f"{name}-{pattern[0].replace(':', 'of').replace('%', 'pct')}"
                    make_model_dir(name, pattern, out_dir)
                    rows.append(bench_one(f"{name} {pattern[0]}", out_dir, args))
                    rows[-1]["sparsity"] = pattern[1]
                    print_row(rows[-1])
                    sys.stdout.flush()
                    if args.out is None:
                        shutil.rmtree(out_dir)  # 0.5 GB per SmolLM2 copy
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    failed = [r["label"] for r in rows for wl in r["workloads"].values() if not wl["check"]["ok"]]
    print("\nsummary (sparse/dense): " + "; ".join(
        f"{r['label']} " + ", ".join(f"{k} {wl['tokens_per_s']['sparse'] / wl['tokens_per_s']['dense']:.2f}x"
                                     for k, wl in r["workloads"].items()) for r in rows))
    if failed:
        print(f"OUTPUT CHECK FAILED for: {', '.join(failed)}")
    decode_rows = [r for r in rows if "decode" in r["workloads"]]
    if decode_rows:
        top = max(decode_rows, key=lambda r: r["sparsity"] or 0.0)
        tps = top["workloads"]["decode"]["tokens_per_s"]
        print(f"decode sparse/dense tokens_per_s ratio: {tps['sparse'] / tps['dense']:.2f}")
    else:
        print("decode sparse/dense tokens_per_s ratio: n/a")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
