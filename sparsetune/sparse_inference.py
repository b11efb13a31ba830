"""Sparse inference on CPU: swap sparse-enough linear layers for torch sparse (CSR/BSR) matrix kernels.

    from transformers import AutoModelForCausalLM
    from sparsetune.sparse_inference import sparsify_linears

    model = AutoModelForCausalLM.from_pretrained("outputs/<run>/model").eval()
    report = sparsify_linears(model, min_sparsity=0.5, tokens=1)   # 1 = optimise for batch-1 decode
    print(report)

An exported sparse model is a dense safetensors file full of zeros; dense kernels gain nothing from the
zeros. Each nn.Linear (or GPT-2 Conv1D) whose weight is at least `min_sparsity` zeros becomes a
`SparseLinear` holding the weight as a torch sparse matrix with int32 indices (torch hands int32 CSR to MKL
as is; int64 indices are converted on every call), which computes the same output:
one input row (batch-1 decode) goes through `torch.addmv`, several rows through `torch.addmm(W, x.T).T`.
Measured on this repo's CPU (EPYC, AVX-512, MKL, one thread; see benchmarks/bench_inference.py):
with unstructured sparsity the matrix-vector product wins from ~50 % zeros (in a real model the dense
matrix streams from DRAM), the matrix-matrix product (prefill, classification) only from ~70 %;
BSR loses unless the zeros come in whole blocks; `F.linear` with a sparse weight and products with a
transposed sparse matrix (x @ W.T as CSR/CSC) are 2-200x slower than dense, so they are not used.

layout="auto" therefore decides per module by timing: every candidate module runs dense and sparse on
random input of the row counts given by `tokens`, sweeping over all candidates in turn so each matrix
comes from memory as it does inside the model (timing one matrix in a loop keeps it in cache and flatters
dense). A module is converted only where sparse is faster; the report says which and why.

Inference only: the sparse weight is a buffer without gradient. `state_dict()` gives the dense `weight`
under the original key and shape (save_pretrained writes an ordinary checkpoint) and `load_state_dict`
takes a dense weight and re-compresses it.
"""
from __future__ import annotations

import contextlib
import statistics
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from .masks import sparsity_of
from .targets import LINEAR_TYPES, find_targets, replace_module, weight_out_in

LAYOUTS = ("auto", "csr", "bsr")
_TORCH_LAYOUT = {"csr": torch.sparse_csr, "bsr": torch.sparse_bsr}
# "auto" also tries BSR, but only where the zeros are block-structured enough for it to have a chance
_BSR_MAX_FILL = 1.5  # stored elements (whole blocks) per true nonzero


@contextlib.contextmanager
def _quiet_beta_warning():
    """torch warns that sparse CSR is "in beta" on new sparse tensors; the kernels used here are MKL's."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        yield


def _compress(dense: torch.Tensor, layout: str, blocksize: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(compressed row pointers, column indices, values) with int32 indices."""
    dense = dense.detach().contiguous()
    with _quiet_beta_warning():
        m = dense.to_sparse_csr() if layout == "csr" else dense.to_sparse_bsr((blocksize, blocksize))
    return m.crow_indices().to(torch.int32), m.col_indices().to(torch.int32), m.values().contiguous()


class SparseLinear(nn.Module):
    """y = x W^T + b with W (out x in) stored in a torch sparse layout; the same output as the dense layer."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, layout: str = "csr", blocksize: int = 4,
                 conv1d: bool = False):
        """`weight` is dense (out x in); `conv1d` records that the original module stored it (in x out)."""
        super().__init__()
        if layout not in _TORCH_LAYOUT:
            raise ValueError(f"SparseLinear layout {layout!r} is not valid; valid: {', '.join(_TORCH_LAYOUT)}")
        self.out_features, self.in_features = weight.shape
        self.layout, self.blocksize, self.conv1d = layout, int(blocksize), bool(conv1d)
        self._set_dense(weight)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_module(cls, module: nn.Module, layout: str = "csr", blocksize: int = 4) -> SparseLinear:
        return cls(weight_out_in(module), module.bias, layout, blocksize, conv1d=isinstance(module, Conv1D))

    def _set_dense(self, weight: torch.Tensor) -> None:
        crow, col, values = _compress(weight, self.layout, self.blocksize)
        # plain buffers, so .to()/deepcopy/pickle work (torch cannot deepcopy a sparse tensor itself)
        self.register_buffer("crow_indices", crow, persistent=False)
        self.register_buffer("col_indices", col, persistent=False)
        self.register_buffer("values", values, persistent=False)
        self._cached = None

    @property
    def weight(self) -> torch.Tensor:
        """The (out x in) sparse matrix, rebuilt only when .to()/load replaced the component buffers."""
        key = (self.crow_indices.data_ptr(), self.col_indices.data_ptr(), self.values.data_ptr(), self.values.dtype)
        if self._cached is None or self._cached[0] != key:
            build = torch.sparse_csr_tensor if self.layout == "csr" else torch.sparse_bsr_tensor
            with _quiet_beta_warning():
                matrix = build(self.crow_indices, self.col_indices, self.values, (self.out_features, self.in_features),
                               check_invariants=False)
            self._cached = (key, matrix)
        return self._cached[1]

    def __getstate__(self):
        state = dict(super().__getstate__())
        state["_cached"] = None  # a sparse tensor cannot be deep-copied or pickled; it is rebuilt on demand
        return state

    @property
    def nnz(self) -> int:
        return int(self.col_indices.numel()) * (1 if self.layout == "csr" else self.blocksize ** 2)

    def dense_weight(self) -> torch.Tensor:
        """The weight as the original module stored it: (out x in), or (in x out) for a Conv1D."""
        w = self.weight.to_dense()
        return w.t().contiguous() if self.conv1d else w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features)
        w = self.weight
        if rows.shape[0] == 1:  # decode: sparse matrix-vector product, ~2x faster than the addmm path
            y = (torch.mv(w, rows[0]) if self.bias is None else torch.addmv(self.bias, w, rows[0])).unsqueeze(0)
        else:  # MKL multiplies sparse @ dense, so (W x^T)^T. Both transposes are explicit row-major copies:
            # torch's own handling of a column-major x^T costs 2x, and a transposed output would push
            # SDPA onto its slow math path
            xt = rows.t().contiguous()
            y = torch.mm(w, xt) if self.bias is None else torch.addmm(self.bias.unsqueeze(1), w, xt)
            y = y.t().contiguous()
        return y.reshape(*lead, self.out_features)

    # state_dict holds the dense weight under the original key/shape: checkpoints stay plain HF checkpoints
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        destination[prefix + "weight"] = self.dense_weight()
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + "weight"
        if key in state_dict:
            dense = state_dict.pop(key)  # load_state_dict passes its own copy of the dict
            dense = dense.t() if self.conv1d else dense
            if tuple(dense.shape) != (self.out_features, self.in_features):
                error_msgs.append(f"size mismatch for {key}: checkpoint {tuple(dense.shape)}, "
                                  f"model {(self.out_features, self.in_features)}")
            else:
                self._set_dense(dense.to(self.values.device, self.values.dtype))
        elif strict:
            missing_keys.append(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"layout={self.layout}, nnz={self.nnz}")


@dataclass
class ModuleDecision:
    name: str
    shape: tuple[int, int]  # (out, in)
    sparsity: float
    layout: str | None  # the sparse layout used; None = left dense
    reason: str
    dense_us: float | None = None  # median time per call, summed over the `tokens` workload (auto only)
    sparse_us: float | None = None


@dataclass
class SparsifyReport:
    decisions: list[ModuleDecision] = field(default_factory=list)
    tokens: dict[int, int] = field(default_factory=dict)  # input rows per call -> calls, as timed by "auto"
    threads: int = 1

    @property
    def converted(self) -> list[ModuleDecision]:
        return [d for d in self.decisions if d.layout is not None]

    @property
    def kept_dense(self) -> list[ModuleDecision]:
        return [d for d in self.decisions if d.layout is None]

    def as_dict(self) -> dict:
        return {"tokens": dict(self.tokens), "threads": self.threads,
                "converted": {d.name: vars(d) for d in self.converted},
                "kept_dense": {d.name: vars(d) for d in self.kept_dense}}

    def __str__(self) -> str:
        workload = ", ".join(f"{r}x{c}" for r, c in self.tokens.items())
        lines = [f"sparsify_linears: {len(self.converted)} converted, {len(self.kept_dense)} kept dense "
                 + f"(workload rows x calls: {workload}; {self.threads} thread(s))"]
        for d in self.decisions:
            what = d.layout or "dense"
            lines.append(f"  {d.name:<50} {d.shape[0]:>6}x{d.shape[1]:<6} sparsity {d.sparsity:6.1%}  {what:<5} {d.reason}")
        return "\n".join(lines)


def _candidates(model: nn.Module, modules: Iterable[str] | None) -> dict[str, nn.Module]:
    if modules is not None:
        return find_targets(model, list(modules))
    return {n: m for n, m in model.named_modules() if n and isinstance(m, LINEAR_TYPES)}


def _shared_weights(model: nn.Module) -> set[int]:
    """ids of parameters used by more than one module (tied embeddings / LM heads)."""
    seen = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    return {k for k, n in seen.items() if n > 1}


def _blocky(weight: torch.Tensor, blocksize: int) -> bool:
    out, inp = weight.shape
    if out % blocksize or inp % blocksize:
        return False
    blocks = (weight != 0).reshape(out // blocksize, blocksize, inp // blocksize, blocksize).any(dim=(1, 3))
    return int(blocks.sum()) * blocksize ** 2 <= _BSR_MAX_FILL * max(int((weight != 0).sum()), 1)


def _check_same_output(dense: nn.Module, sparse: SparseLinear) -> str | None:
    """None when `sparse` reproduces `dense` on a random probe (1 and 3 rows); else why not."""
    gen = torch.Generator().manual_seed(0)
    w = weight_out_in(dense)
    try:
        for rows in (1, 3):
            x = torch.randn(rows, sparse.in_features, generator=gen).to(w.device, w.dtype)
            with torch.no_grad():
                ref, got = dense(x), sparse(x)
            tol = 1e-3 if w.dtype in (torch.float16, torch.bfloat16) else 1e-5
            scale = float(ref.abs().max()) + 1.0
            if not torch.allclose(ref.float(), got.float(), rtol=tol, atol=tol * scale):
                return f"sparse output differs from dense (max abs diff {float((ref - got).abs().max()):.2e})"
    except (RuntimeError, NotImplementedError) as e:
        return f"no torch sparse kernel here: {str(e).splitlines()[0][:120]}"
    return None


def _time_sweep(pairs: dict[str, tuple[nn.Module, dict[str, nn.Module]]], token_counts: Counter,
                repeats: int) -> dict[str, dict[str, float]]:
    """Median microseconds per call of each implementation of each module, weighted by token_counts.

    Each round calls every module once per implementation in turn, so a module's matrix has left the cache
    before it is timed again (as in a model forward). With one torch thread the clock is the thread's CPU
    time, which other processes taking the core do not inflate; with more threads, wall time."""
    totals: dict[str, dict[str, float]] = {n: {} for n in pairs}
    impls = sorted({k for _, cands in pairs.values() for k in cands} | {"dense"})
    clock = time.thread_time if torch.get_num_threads() == 1 else time.perf_counter
    with torch.no_grad():
        for rows, count in token_counts.items():
            inputs = {}
            for dense, _ in pairs.values():
                w = weight_out_in(dense)
                key = (w.shape[1], w.dtype, w.device)
                if key not in inputs:
                    x = torch.randn(rows, w.shape[1], generator=torch.Generator().manual_seed(rows))
                    inputs[key] = x.to(w.device, w.dtype)
            times = {n: {k: [] for k in ["dense", *pairs[n][1]]} for n in pairs}
            names = list(pairs)
            for round_ in range(repeats + 1):  # round 0 warms up (MKL setup, first-touch pages)
                # a 2x gap either way in every module after one timed round needs no more rounds (stopping
                # only some modules would leave the others' weights warm in the cache)
                if round_ == 2 and all(not 0.5 < min(t[k][0] for k in t if k != "dense") / max(t["dense"][0], 1e-9) < 2
                                       for t in times.values()):
                    break
                # start each round at another module, so no module is always first after a switch of kernels
                order = names[round_ % len(names):] + names[:round_ % len(names)]
                for impl in impls:
                    for name in order:
                        dense, cands = pairs[name]
                        mod = dense if impl == "dense" else cands.get(impl)
                        if mod is None:
                            continue
                        w = weight_out_in(dense)
                        x = inputs[(w.shape[1], w.dtype, w.device)]
                        t0 = clock()
                        mod(x)
                        elapsed = clock() - t0
                        if round_:
                            times[name][impl].append(elapsed)
            for name, per_impl in times.items():
                for impl, ts in per_impl.items():
                    totals[name][impl] = totals[name].get(impl, 0.0) + statistics.median(ts) * 1e6 * count
    return totals


def _token_counts(tokens: int | Sequence[int]) -> Counter:
    values = [tokens] if isinstance(tokens, int) else list(tokens)
    if not values or any(not isinstance(t, int) or isinstance(t, bool) or t < 1 for t in values):
        raise ValueError(f"tokens must be a positive int or a non-empty list of them (rows per call: 1 = decode), "
                         f"got {tokens!r}")
    return Counter(values)


@torch.no_grad()
def sparsify_linears(model: nn.Module, min_sparsity: float = 0.5, layout: str = "auto",
                     modules: Iterable[str] | None = None, tokens: int | Sequence[int] = 1, blocksize: int = 4,
                     repeats: int = 5) -> SparsifyReport:
    """Replace, in place, the linear layers of `model` whose weights are sparse enough by `SparseLinear`.

    min_sparsity: fraction of zeros below which a layer stays dense without being tried.
    layout: "auto" (time dense, CSR and, for block-structured zeros, BSR per module; keep the fastest),
        "csr" or "bsr" (convert every layer above min_sparsity to that layout, untimed).
    modules: name suffixes to consider (as in a model config's target_modules); None = every
        nn.Linear / Conv1D, so heads and anything that is not sparse simply stay dense.
    tokens: input rows per call that "auto" optimises for: 1 for batch-1 decode, batch*seq_len for a
        forward pass; a list sums the times, e.g. [64] + [1] * 32 for a 64-token prompt and 32 new tokens.
    blocksize: BSR block edge. repeats: timing rounds per module for "auto" (median).
    Returns a SparsifyReport (print it): every layer considered, its sparsity, and the layout used or why it
    stayed dense. Layers whose weight is tied to another module (LM head = embeddings) always stay dense.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r} is not valid; valid: {', '.join(LAYOUTS)}")
    if not 0.0 <= float(min_sparsity) <= 1.0:
        raise ValueError(f"min_sparsity must be in [0, 1], got {min_sparsity!r}")
    if int(blocksize) < 1:
        raise ValueError(f"blocksize must be >= 1, got {blocksize!r}")
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    token_counts = _token_counts(tokens)
    report = SparsifyReport(tokens=dict(sorted(token_counts.items())), threads=torch.get_num_threads())
    tied = _shared_weights(model)
    pairs: dict[str, tuple[nn.Module, dict[str, SparseLinear]]] = {}
    info: dict[str, ModuleDecision] = {}
    for name, mod in _candidates(model, modules).items():
        w = weight_out_in(mod)
        d = ModuleDecision(name, (w.shape[0], w.shape[1]), sparsity_of(w), None, "")
        info[name] = d
        if id(mod.weight) in tied:
            d.reason = "weight tied to another module"
        elif d.sparsity < min_sparsity:
            d.reason = f"not sparse enough ({d.sparsity:.1%} < min_sparsity {min_sparsity:.0%})"
        elif layout == "auto" and w.device.type != "cpu":
            d.reason = f"layout='auto' times CPU kernels; weight is on {w.device.type} (pass layout='csr')"
        else:
            wanted = [layout] if layout != "auto" else ["csr"] + (["bsr"] if _blocky(w, blocksize) else [])
            cands, problems = {}, []
            for lay in wanted:
                if lay == "bsr" and (w.shape[0] % blocksize or w.shape[1] % blocksize):
                    problems.append(f"shape not divisible by blocksize {blocksize}")
                    continue
                sparse = SparseLinear.from_module(mod, lay, blocksize)
                problem = _check_same_output(mod, sparse)
                if problem:
                    problems.append(problem)
                else:
                    cands[lay] = sparse
            if cands:
                pairs[name] = (mod, cands)
            else:
                d.reason = "; ".join(problems)
    timings = _time_sweep(pairs, token_counts, int(repeats)) if layout == "auto" and pairs else {}
    for name, (_, cands) in pairs.items():
        d = info[name]
        if layout == "auto":
            t = timings[name]
            best = min(cands, key=lambda k: t[k])
            d.dense_us, d.sparse_us = t["dense"], t[best]
            if t[best] >= t["dense"]:
                d.reason = f"sparse slower ({best} {t[best]:.0f} us vs dense {t['dense']:.0f} us)"
                continue
            d.layout, d.reason = best, f"{t['dense'] / t[best]:.2f}x faster ({t[best]:.0f} us vs dense {t['dense']:.0f} us)"
        else:
            best = layout
            d.layout, d.reason = best, "forced layout"
        replace_module(model, name, cands[best])
    report.decisions = list(info.values())
    return report


__all__ = ["LAYOUTS", "ModuleDecision", "SparseLinear", "SparsifyReport", "sparsify_linears", "sparsity_of"]
