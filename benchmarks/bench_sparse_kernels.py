"""Which torch sparse product is fast on this CPU? Time per call of y = x W^T + b, as a ratio to dense F.linear.

    python benchmarks/bench_sparse_kernels.py                    # SmolLM2-135M shapes, 1 thread (~1.5 CPU-min)
    python benchmarks/bench_sparse_kernels.py --threads 2 --rows 1 64 --shapes 1536x576

W is magnitude-pruned random (out x in) at each sparsity (unstructured) or 2:4. Each path runs over enough
distinct copies of W to overflow the last-level cache, one call per copy in turn, as a model forward
streams its layers (timing one matrix in a loop keeps it in cache and flatters dense). Median over rounds;
the clock is thread CPU time with one thread (robust to other jobs on the core), wall time otherwise.
Ratios < 1 mean the sparse path is faster. Paths (indices int32, which MKL takes without a copy):
  addmv        torch.addmv(b, W_csr, x)                  one row only (batch-1 decode)   <- SparseLinear
  addmm        torch.addmm(b, W_csr, x^T)^T, row-major in/out copies                    <- SparseLinear
  sparse.addmm torch.sparse.addmm(b, W_csr, x^T)^T
  F.linear     F.linear(x, W_csr, b)
  xWt_csr      torch.addmm(b, x, (W^T)_csr)              the transposed layout: dense @ sparse
  csc          torch.addmm(b, W_csc, x^T)^T
  bsr4/bsr16   torch.addmm(b, W_bsr, x^T)^T with 4x4 / 16x16 blocks
  coo          torch.sparse.mm(W_coo, x^T)^T + b
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

PATHS = ("addmv", "addmm", "sparse.addmm", "F.linear", "xWt_csr", "csc", "bsr4", "bsr16", "coo")
SLOW = ("F.linear", "xWt_csr", "coo")  # 2-200x slower than dense: fewer copies, so the run stays short
CACHE_BYTES = 64 * 2**20  # copies of W per sweep: enough dense bytes to overflow a 32 MB L3 twice


def pruned(out: int, inp: int, pattern: str, gen: torch.Generator) -> torch.Tensor:
    w = torch.randn(out, inp, generator=gen)
    if pattern == "2:4":
        groups = w.abs().reshape(out, inp // 4, 4)
        drop = groups.topk(2, dim=2, largest=False).indices
        return w * torch.ones_like(groups).scatter_(2, drop, 0).reshape(out, inp)
    k = int(w.numel() * float(pattern))
    return w * (w.abs() > w.abs().flatten().kthvalue(k).values)


def int32(m: torch.Tensor) -> torch.Tensor:
    build = torch.sparse_csr_tensor if m.layout == torch.sparse_csr else torch.sparse_bsr_tensor
    return build(m.crow_indices().int(), m.col_indices().int(), m.values(), m.shape, check_invariants=False)


def sparse_product(m: torch.Tensor, b: torch.Tensor, xt: torch.Tensor):
    """y = (M x^T + b)^T for a sparse M (out x in) of any layout, row-major like F.linear's output."""
    return lambda: torch.addmm(b[:, None], m, xt).t().contiguous()


def implementations(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> dict:
    csr = int32(w.to_sparse_csr())
    wt_csr = int32(w.t().contiguous().to_sparse_csr())
    coo = w.to_sparse()
    xt = x.t().contiguous()
    impls = {
        "dense": lambda: F.linear(x, w, b),
        "addmm": lambda: torch.addmm(b[:, None], csr, x.t().contiguous()).t().contiguous(),
        "sparse.addmm": lambda: torch.sparse.addmm(b[:, None], csr, xt).t().contiguous(),
        "F.linear": lambda: F.linear(x, csr, b),
        "xWt_csr": lambda: torch.addmm(b, x, wt_csr),
        "csc": sparse_product(w.to_sparse_csc(), b, xt),
        "coo": lambda: torch.sparse.mm(coo, xt).t() + b,
    }
    if x.shape[0] == 1:
        impls["addmv"] = lambda: torch.addmv(b, csr, x[0])
    for bs in (4, 16):
        if w.shape[0] % bs == 0 and w.shape[1] % bs == 0:
            impls[f"bsr{bs}"] = sparse_product(int32(w.to_sparse_bsr(bs)), b, xt)
    return impls


def sweep(fns: list, rounds: int, clock) -> float:
    per = [[] for _ in fns]
    for r in range(rounds + 1):
        for j, f in enumerate(fns):
            t0 = clock()
            f()
            if r:
                per[j].append(clock() - t0)
    return statistics.median(statistics.median(p) for p in per)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--shapes", nargs="+", default=["576x576", "192x576", "1536x576", "576x1536"],
                   help="OUTxIN (default: SmolLM2-135M q/o, k/v, gate/up, down)")
    p.add_argument("--rows", nargs="+", type=int, default=[1, 64], help="input rows: 1 = decode, 64 = prefill")
    p.add_argument("--patterns", nargs="+", default=["0.5", "0.7", "0.9", "2:4"])
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    print(f"torch {torch.__version__}, {args.threads} thread(s); time per call as a ratio to dense F.linear (<1 = faster)")
    print(f"{'shape':>9} {'rows':>4} {'pattern':>7} {'dense us':>9}  " + " ".join(f"{k:>12}" for k in args.paths))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for shape in args.shapes:
            out, inp = (int(v) for v in shape.split("x"))
            copies = max(2, CACHE_BYTES // (out * inp * 4))
            for rows in args.rows:
                x, b = torch.randn(rows, inp, generator=gen), torch.randn(out, generator=gen)
                for pattern in args.patterns:
                    impls = [implementations(pruned(out, inp, pattern, gen), b, x) for _ in range(copies)]
                    ref = impls[0]["dense"]()
                    dense = sweep([i["dense"] for i in impls], args.rounds, clock)
                    cells = []
                    for path in args.paths:
                        if path not in impls[0]:
                            cells.append("-")
                            continue
                        assert torch.allclose(impls[0][path]().reshape(ref.shape), ref, atol=1e-4, rtol=1e-4), path
                        n = max(2, copies // 8) if path in SLOW else copies
                        cells.append(f"{sweep([i[path] for i in impls[:n]], args.rounds, clock) / dense:.2f}")
                    print(f"{shape:>9} {rows:>4} {pattern:>7} {dense * 1e6:9.0f}  " + " ".join(f"{c:>12}" for c in cells),
                          flush=True)


if __name__ == "__main__":
    main()
