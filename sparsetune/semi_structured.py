"""2:4 sparse inference on CUDA: swap 2:4-pruned nn.Linear weights for torch semi-structured sparse tensors.

    model = AutoModelForCausalLM.from_pretrained("outputs/<run>/model", dtype=torch.float16).cuda().eval()
    report = semi_structured_linears(model)     # every eligible Linear; print(report) says which and why
    logits = model(input_ids.cuda()).logits

`torch.sparse.to_sparse_semi_structured` stores a 2:4 matrix as its kept half plus metadata and multiplies it on
the sparse tensor cores (cuSPARSELt, or CUTLASS where cuSPARSELt is missing). What that kernel takes, from the
torch docs and torch/sparse/semi_structured.py:
- a CUDA device of compute capability 8.0 or newer (Ampere and later);
- a 2-D contiguous weight in float16 or bfloat16 (torch also has int8/fp8 paths; not used for inference here);
- both dimensions at least, and a multiple of, the backend's minimum: 16 x 16 for cuSPARSELt, 32 x 64 for CUTLASS;
- at most 2 nonzeros in every group of 4 consecutive weights along the input dimension. The kernel keeps 2 per
  group whatever it is given: a 3rd nonzero would be dropped silently, so such a layer stays dense here.
Only nn.Linear is converted (GPT-2's Conv1D stores W transposed), never a weight tied to another module (an LM
head that is the embedding matrix). `plan_semi_structured` gives the same per-layer verdicts without a GPU (the
device is the last check), so the rules are testable on CPU. Inference only: the sparse weight has no gradient.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .masks import sparsity_of
from .sparse_inference import ModuleDecision, SparsifyReport, _candidates, _shared_weights
from .targets import weight_out_in

LAYOUT = "2:4"
DTYPES = (torch.float16, torch.bfloat16)
MIN_CAPABILITY = (8, 0)
# (rows, cols) minimum and multiple of the sparse weight per backend, fp16/bf16 (torch's _DTYPE_SHAPE_CONSTRAINTS)
SHAPE_MINIMUM = {"cusparselt": (16, 16), "cutlass": (32, 64)}
BACKENDS = tuple(SHAPE_MINIMUM)


def default_backend() -> str:
    """The backend to_sparse_semi_structured would use: cuSPARSELt unless it is absent or CUTLASS is forced."""
    forced = getattr(torch.sparse.SparseSemiStructuredTensor, "_FORCE_CUTLASS", False)
    return "cutlass" if forced or not torch.backends.cusparselt.is_available() else "cusparselt"


def _backend_class(backend: str):
    if backend not in SHAPE_MINIMUM:
        raise ValueError(f"semi-structured backend {backend!r} is not valid; valid: {', '.join(BACKENDS)}")
    return torch.sparse.SparseSemiStructuredTensorCUTLASS if backend == "cutlass" else \
        torch.sparse.SparseSemiStructuredTensorCUSPARSELT


def shape_minimum(backend: str, dtype: torch.dtype = torch.float16) -> tuple[int, int]:
    """(rows, cols) that the weight's shape must reach and be a multiple of; torch's own table when it has one."""
    constraints = getattr(_backend_class(backend), "_DTYPE_SHAPE_CONSTRAINTS", {}).get(dtype)
    if constraints is not None:
        return int(constraints.sparse_min_rows), int(constraints.sparse_min_cols)
    return SHAPE_MINIMUM[backend]


def groups_over_2of4(weight: torch.Tensor) -> int:
    """Groups of 4 consecutive weights along the input dim (last) with more than 2 nonzeros; -1 if it does not split."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return -1
    return int(((weight.detach().reshape(-1, 4) != 0).sum(dim=1) > 2).sum())


def is_2of4(weight: torch.Tensor) -> bool:
    return groups_over_2of4(weight) == 0


def cuda_problem(device: torch.device | str | None = None) -> str | None:
    """None when 2:4 sparse kernels can run on `device` (default: the current CUDA device); else why not."""
    if not torch.cuda.is_available():
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        return f"CUDA is not available (torch {torch.__version__}, {built}); 2:4 sparse kernels need an NVIDIA GPU"
    device = torch.device(device if device is not None else "cuda")
    if device.type != "cuda":
        return f"2:4 sparse kernels run on CUDA devices, not {device}"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < MIN_CAPABILITY:
        return (f"{torch.cuda.get_device_name(device)} has compute capability {major}.{minor}; 2:4 sparse kernels "
                f"need {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} or newer (Ampere and later)")
    return None


def module_problem(module: nn.Module, backend: str, tied: bool = False) -> str | None:
    """None when the module's weight can become a semi-structured tensor as it is; else why not. The device is
    checked last, so on a CPU the answer for an otherwise eligible layer is only that it is not on CUDA."""
    if not isinstance(module, nn.Linear):
        return f"{type(module).__name__} is not an nn.Linear (Conv1D stores its weight transposed)"
    if tied:
        return "weight tied to another module"
    w = module.weight
    if w.dtype not in DTYPES:
        return f"dtype {str(w.dtype).removeprefix('torch.')}: the 2:4 kernels take float16 or bfloat16 (load the model in fp16/bf16)"
    rows, cols = w.shape
    min_rows, min_cols = shape_minimum(backend, w.dtype)
    if rows < min_rows or rows % min_rows or cols < min_cols or cols % min_cols:
        return f"shape {rows}x{cols} is not a multiple of the {backend} minimum {min_rows}x{min_cols}"
    over = groups_over_2of4(w)
    if over:
        return (f"not 2:4 sparse: {over} of {w.numel() // 4} groups of 4 along the input dim have more than 2 "
                f"nonzeros ({sparsity_of(w):.1%} zeros)")
    if w.device.type != "cuda":
        return f"weight is on {w.device.type}; 2:4 kernels need it on CUDA"
    return None


def plan_semi_structured(model: nn.Module, modules: Iterable[str] | None = None, backend: str | None = None,
                         check_device: bool = True) -> list[ModuleDecision]:
    """Per candidate layer (every nn.Linear / Conv1D, or those whose names end in `modules`): layout "2:4" when it
    would be converted, else None and the reason. check_device=False leaves out the CUDA check (dry run on CPU)."""
    backend = backend or default_backend()
    tied = _shared_weights(model)
    decisions = []
    for name, mod in _candidates(model, modules).items():
        w = weight_out_in(mod)
        problem = module_problem(mod, backend, tied=id(mod.weight) in tied)
        if problem and not check_device and problem.startswith("weight is on "):
            problem = None
        decisions.append(ModuleDecision(name, (w.shape[0], w.shape[1]), sparsity_of(w), None if problem else LAYOUT,
                                        problem or f"2:4 semi-structured ({backend})"))
    return decisions


@dataclass
class SemiStructuredReport(SparsifyReport):
    """SparsifyReport's per-layer decisions; the header names the backend instead of a CPU timing workload."""

    backend: str = ""

    def __str__(self) -> str:
        lines = [f"semi_structured_linears: {len(self.converted)} converted to 2:4 ({self.backend}), "
                 f"{len(self.kept_dense)} kept dense"]
        for d in self.decisions:
            lines.append(f"  {d.name:<50} {d.shape[0]:>6}x{d.shape[1]:<6} sparsity {d.sparsity:6.1%}  "
                         f"{d.layout or 'dense':<5} {d.reason}")
        return "\n".join(lines)


def _same_output(dense: nn.Linear, sparse_weight: torch.Tensor) -> str | None:
    """None when F.linear with the sparse weight matches the dense layer on a random probe (1 and 24 rows)."""
    gen = torch.Generator(device=dense.weight.device).manual_seed(0)
    for rows in (1, 24):
        x = torch.randn(rows, dense.in_features, generator=gen, device=dense.weight.device, dtype=dense.weight.dtype)
        ref = nn.functional.linear(x, dense.weight, dense.bias).float()
        got = nn.functional.linear(x, sparse_weight, dense.bias).float()
        tol = 1e-2 * (float(ref.abs().max()) + 1.0)  # fp16/bf16 sums in another order
        if not torch.allclose(ref, got, rtol=0, atol=tol):
            return f"sparse output differs from dense (max abs diff {float((ref - got).abs().max()):.2e})"
    return None


@torch.no_grad()
def semi_structured_linears(model: nn.Module, modules: Iterable[str] | None = None,
                            backend: str | None = None) -> SemiStructuredReport:
    """Replace, in place, the weight of every eligible nn.Linear by a 2:4 semi-structured sparse tensor.

    modules: name suffixes to consider (a model config's target_modules); None = every Linear / Conv1D, so heads
    and anything not 2:4 stay dense with their reason. backend: "cusparselt" or "cutlass" (default: torch's).
    Raises RuntimeError, before touching the model, when no CUDA device of compute capability 8.0+ is there.
    """
    device = next((p.device for p in model.parameters() if p.device.type == "cuda"), None)
    problem = cuda_problem(device)
    if problem:
        raise RuntimeError(problem)
    backend = backend or default_backend()
    cls = _backend_class(backend)
    named = dict(model.named_modules())
    decisions = plan_semi_structured(model, modules, backend)
    for d in decisions:
        if d.layout is None:
            continue
        mod = named[d.name]
        sparse = cls.from_dense(mod.weight.detach().contiguous())
        mismatch = _same_output(mod, sparse)
        if mismatch:
            d.layout, d.reason = None, mismatch
            continue
        mod.weight = nn.Parameter(sparse, requires_grad=False)
    return SemiStructuredReport(decisions=decisions, tokens={}, threads=torch.get_num_threads(), backend=backend)


__all__ = ["BACKENDS", "LAYOUT", "SemiStructuredReport", "cuda_problem", "default_backend", "groups_over_2of4", "is_2of4", "module_problem",
           "plan_semi_structured", "semi_structured_linears", "shape_minimum"]
