"""Every method's config schema and its checks that need only the config (no torch, no transformers).

`python train.py ...` composes and checks the config with this module alone, so bad input fails in about
two seconds; the method classes (sparsetune/methods/) take their `Config` from here and add the checks
that need their libraries (salience options, target shapes, calibration settings).
Each `check(cfg)` raises ValueError saying what is allowed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from omegaconf import MISSING

SCORE_TERMS = ("magnitude", "lowrank", "structured")  # PST: |W0 + βUV|, α1·A·B, α2·(R + C)
SCORE_INITS = ("magnitude", "constant")  # MvP: scores start at |W| or 0
SPP_IMPLS = ("blocked", "naive")  # SPP eq. 7 memory-efficient form | explicit W~' (eq. 4-5)
SPP_ZERO_INITS = ("beta", "alpha", "none", "both")  # SPP Tables 4 / 8: which factors start at zero
PRUNERS = ("magnitude", "wanda", "sparsegpt", "dsnot")
SCOPES = ("local", "global")


def check_sparsity(sparsity: float, name: str = "sparsity") -> float:
    if not (0.0 <= float(sparsity) < 1.0):
        raise ValueError(f"{name} must be in [0, 1) (fraction of zeros), got {sparsity}")
    return float(sparsity)


def check_fraction(value: float, name: str, low_open: bool = False, high_closed: bool = False) -> None:
    v = float(value)
    ok = (v > 0.0 if low_open else v >= 0.0) and (v <= 1.0 if high_closed else v < 1.0)
    if not ok:
        raise ValueError(f"{name} must be in {'(' if low_open else '['}0, 1{']' if high_closed else ')'}, got {value}")


def check_positive_int(value, name: str, minimum: int = 1) -> None:
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_choice(value, allowed, name: str) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """'unstructured' -> None, '2:4' -> (2, 4) = 2 kept of every 4."""
    if pattern == "unstructured":
        return None
    try:
        n, m = (int(x) for x in pattern.split(":"))
    except ValueError:
        raise ValueError(f"sparsity pattern must be 'unstructured' or 'N:M' (e.g. 2:4), got {pattern!r}") from None
    if not (0 < n < m):
        raise ValueError(f"N:M pattern needs 0 < N < M, got {pattern!r}")
    return n, m


def pattern_sparsity(pattern: str, sparsity: float | None) -> float:
    """The fraction of zeros a pattern implies: 1 - N/M for N:M, else the configured sparsity."""
    nm = parse_pattern(str(pattern))
    if nm is None:
        if sparsity is None:
            raise ValueError("unstructured pruning needs method.sparsity (fraction of zeros, in [0, 1))")
        return check_sparsity(sparsity, "method.sparsity")
    implied = 1.0 - nm[0] / nm[1]
    if sparsity is not None and abs(float(sparsity) - implied) > 1e-9:
        raise ValueError(
            f"method.pattern {pattern!r} keeps {nm[0]} of every {nm[1]} weights (sparsity {implied:g}); "
            f"method.sparsity={sparsity} contradicts it: leave sparsity unset (null) or set it to {implied:g}"
        )
    return implied


# DSnoT (salience=dsnot): its own options, their defaults (the reference's), and the keys it shares
DSNOT_BASES = ("wanda", "sparsegpt", "magnitude")
DSNOT_LAYERS = ("attention", "all")  # attention = model.attention_modules only (reference skip_layer=mlp)
DSNOT_DEFAULTS = {"base": "wanda", "max_cycles": 50, "update_threshold": 0.1, "gamma": 1.0,
                  "same_sign": None, "layers": "attention"}
DSNOT_SHARED_KEYS = ("calibration", "percdamp")  # percdamp: damping of the base=sparsegpt score


def check_dsnot_options(options) -> dict:
    """DSnoT's own options with defaults filled in; one-line errors for unknown keys or bad values."""
    options = dict(options or {})
    allowed = sorted([*DSNOT_DEFAULTS, *DSNOT_SHARED_KEYS])
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown salience.options {unknown} for dsnot; allowed: {allowed}")
    out = {**DSNOT_DEFAULTS, **{k: options[k] for k in DSNOT_DEFAULTS if k in options}}
    check_choice(out["base"], DSNOT_BASES, "salience.options.base (dsnot's initial mask)")
    check_choice(out["layers"], DSNOT_LAYERS, "salience.options.layers (matrices dsnot refines)")
    if out["same_sign"] not in (None, True, False):
        raise ValueError(f"salience.options.same_sign must be null (as the reference), true or false, got {out['same_sign']!r}")
    if isinstance(out["max_cycles"], bool) or not isinstance(out["max_cycles"], int) or out["max_cycles"] < 1:
        raise ValueError(f"salience.options.max_cycles must be an integer >= 1, got {out['max_cycles']!r}")
    for key in ("update_threshold", "gamma"):
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < float("inf"):
            raise ValueError(f"salience.options.{key} must be a finite number >= 0, got {value!r}")
    out["update_threshold"], out["gamma"] = float(out["update_threshold"]), float(out["gamma"])
    return out


def check_score_terms(terms) -> tuple[str, ...]:
    terms = tuple(terms)
    bad = [t for t in terms if t not in SCORE_TERMS]
    if bad or not terms or len(set(terms)) != len(terms):
        raise ValueError(
            f"PST score_terms must be a non-empty subset of {list(SCORE_TERMS)} without repeats, got {list(terms)}")
    return terms


@dataclass
class MethodConfig:
    name: str = MISSING
    train_head: str = "full"  # full | final (last projection only) | none
    train_bias: bool = False  # train the biases of the target matrices
    targets: str = "all"  # all = model.target_modules | attention = model.attention_modules
    # explicit module-name suffixes (e.g. [query, value]: the SPEFT paper's BERT budget); overrides `targets`
    target_modules: list[str] | None = None
    # methods that prune nothing accept a sweep's shared method.sparsity and record it as not applicable
    sparsity: float | None = None
    # the optional config groups the method reads: the others (composed by default) change nothing in its runs,
    # so a table does not show them for its rows (LoRA has no salience metric, full fine-tuning no mask schedule)
    reads: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check(cls, cfg) -> None:
        m = cfg.method
        check_choice(m.train_head, ("full", "final", "none"), "method.train_head")
        check_choice(m.targets, ("all", "attention"), "method.targets")
        explicit = m.get("target_modules")
        if explicit is not None and not (len(explicit) and all(isinstance(t, str) and t for t in explicit)):
            raise ValueError(f"method.target_modules must be null or a non-empty list of module-name suffixes "
                             f"(e.g. [q_proj, v_proj]), got {list(explicit)}")


@dataclass
class SparseMethodConfig(MethodConfig):
    sparsity: float | None = 0.9  # fraction of zeros in the target matrices
    scope: str = "local"  # local (per matrix) | global (one ranking over all targets)


@dataclass
class ScheduledMaskConfig(SparseMethodConfig):
    """MaP, MvP and PST: masks follow a sparsity schedule during training."""

    reads: ClassVar[tuple[str, ...]] = ("mask_schedule",)

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        m, sched = cfg.method, cfg.mask_schedule
        if m.sparsity is None:
            raise ValueError(f"method={m.name} needs method.sparsity in [0, 1)")
        check_sparsity(m.sparsity, "method.sparsity")
        check_choice(m.scope, SCOPES, "method.scope")
        check_sparsity(sched.get("initial_sparsity", 0.0), "mask_schedule.initial_sparsity")
        if sched.name not in ("cubic", "constant", "oneshot"):
            raise ValueError(f"method={m.name} needs mask_schedule cubic, constant or oneshot, got {sched.name!r}")


@dataclass
class MovementConfig(ScheduledMaskConfig):
    score_lr: float = 1.0e-2  # learning rate of the scores (weights use train.lr)
    score_init: str = "magnitude"  # magnitude = |W| (PST paper's MvP) | constant = 0 (HF example default)

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        check_choice(cfg.method.score_init, SCORE_INITS, "method.score_init")
        if not float(cfg.method.score_lr) > 0:
            raise ValueError(f"method.score_lr must be > 0, got {cfg.method.score_lr}")


@dataclass
class PSTConfig(ScheduledMaskConfig):
    train_head: str = "final"  # the head's last projection trains (counted in the paper's 2.91M / 7.77M)
    train_bias: bool = True  # target biases train (also in those counts)
    r1: int = 8  # rank of the low-rank score A·B
    r2: int = 8  # rank of the weight update U·V (0 = W stays W0, only the mask learns)
    beta: float = 1.0  # W = W0 + beta·U·V
    alpha1: float = 1.0  # weight of A·B in the score
    alpha2: float = 1.0  # weight of R + C in the score
    # which terms S sums (Table 5 ablations): magnitude = |W0+βUV|, lowrank = α1·AB, structured = α2·(R+C)
    score_terms: list[str] = field(default_factory=lambda: list(SCORE_TERMS))

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        m = cfg.method
        terms = check_score_terms(m.score_terms)
        if int(m.r2) < 0:
            raise ValueError(f"method.r2 must be >= 0 (0 freezes W at W0), got {m.r2}")
        if "lowrank" in terms and int(m.r1) < 1:
            raise ValueError(f"method.r1 must be >= 1 while score_terms has 'lowrank', got {m.r1}")


@dataclass
class SpeftConfig(MethodConfig):
    reads: ClassVar[tuple[str, ...]] = ("salience", "mask_schedule")  # the metric; static or dynamic selection
    targets: str = "attention"
    match_lora_rank: int | None = 8  # select LoRA rank-r's trainable count r*(in+out) per target; null = use density
    density: float | None = None  # fraction of the target weights to adapt (with match_lora_rank=null)
    scope: str = "global"  # global = one ranking over all target matrices | local = per matrix (per fused block)

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        m, sched = cfg.method, cfg.mask_schedule
        rank, density = m.get("match_lora_rank"), m.get("density")
        if (rank is None) == (density is None):
            raise ValueError("method=speft needs exactly one budget: method.match_lora_rank=R (LoRA's count) or "
                             "method.density=RHO with method.match_lora_rank=null")
        if rank is not None:
            check_positive_int(rank, "method.match_lora_rank")
        if density is not None:
            check_fraction(density, "method.density", low_open=True, high_closed=True)
        check_choice(m.scope, SCOPES, "method.scope")
        if sched.name not in ("static", "dynamic"):
            raise ValueError("method=speft needs mask_schedule=static (mask fixed before training) or mask_schedule="
                             f"dynamic (re-selected every mask_schedule.update_every steps), got {sched.name!r}")
        if sched.name == "dynamic":
            check_positive_int(sched.update_every, "mask_schedule.update_every")
            if not sched.get("reset_optimizer", True):
                raise ValueError("mask_schedule=dynamic needs reset_optimizer=true: the Adam moments of the sparse "
                                 "values belong to the old positions (the paper resets them, §3.4)")


@dataclass
class LoraMethodConfig(MethodConfig):
    targets: str = "attention"
    r: int = 8
    alpha: float = 8.0
    dropout: float = 0.05

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        m = cfg.method
        check_positive_int(m.r, "method.r")
        if float(m.alpha) <= 0:
            raise ValueError(f"method.alpha must be > 0, got {m.alpha}")
        check_fraction(m.dropout, "method.dropout")


@dataclass
class PissaMethodConfig(LoraMethodConfig):
    dropout: float = 0.0
    pissa_niter: int | None = None  # None = exact SVD; K = torch.svd_lowrank with K subspace iterations

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        niter = cfg.method.get("pissa_niter")
        if niter is not None and int(niter) < 1:
            raise ValueError(f"method.pissa_niter must be null (exact SVD) or >= 1, got {niter}")


@dataclass
class OneShotPruneConfig(SparseMethodConfig):
    """Method config fields of methods that start from a one-shot pruned model (SPP, LoRA*)."""

    reads: ClassVar[tuple[str, ...]] = ("salience", "mask_schedule")  # the pruner and its calibration; oneshot

    sparsity: float | None = 0.5  # fraction of zeros (unstructured); null or 1-N/M with an N:M pattern
    pattern: str = "unstructured"  # unstructured | N:M = N weights kept in every M (2:4, 4:8, 2:8)
    prune: bool = True  # false: the loaded model is already pruned (a local pruned checkpoint)
    r: int = 8
    dropout: float = 0.05

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        m = cfg.method
        if cfg.mask_schedule.name != "oneshot":
            raise ValueError(f"{m.name} prunes once before training: use mask_schedule=oneshot, got {cfg.mask_schedule.name!r}")
        if m.get("scope", "local") != "local":
            raise ValueError(f"{m.name}: post-training pruners rank per matrix (method.scope=local), got {m.scope!r}")
        check_choice(str(cfg.salience.name), PRUNERS, f"salience (the pruner of method={m.name})")
        if str(cfg.salience.name) == "dsnot":
            dsnot = check_dsnot_options(cfg.salience.get("options") or {})
            if dsnot["layers"] == "attention" and not cfg.model.get("attention_modules"):
                raise ValueError("salience=dsnot with layers=attention needs model.attention_modules (the attention "
                                 "projections' name suffixes); or set salience.options.layers=all")
        pattern_sparsity(str(m.pattern), m.get("sparsity"))
        check_positive_int(m.r, "method.r")
        check_fraction(m.dropout, "method.dropout")


@dataclass
class SPPConfig(OneShotPruneConfig):
    r: int = 16  # rows of alpha; must divide every target's output dim
    lora_alpha: float = 32.0  # s = lora_alpha / r unless `scaling` is set
    scaling: float | None = None
    dropout: float = 0.05  # on the adapter branch's input only
    impl: str = "blocked"  # blocked = memory-efficient eq. 7 | naive = explicit W~' (eq. 4-5)
    use_beta: bool = True  # Table 4 ablation: false = no W_beta (W~' = W~ * Repeat0(alpha), beta fixed at 1)
    zero_init: str = "beta"  # Tables 4 / 8: beta (paper) | alpha | none | both (no gradient ever: a null update)

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        m = cfg.method
        check_choice(m.impl, SPP_IMPLS, "method.impl")
        check_spp_init(m.use_beta, m.zero_init)


def check_spp_init(use_beta: bool, zero_init: str) -> None:
    check_choice(zero_init, SPP_ZERO_INITS, "method.zero_init")
    if not use_beta and zero_init in ("beta", "both"):
        raise ValueError(f"method.zero_init={zero_init} needs W_beta (method.use_beta=true); "
                         "without it use zero_init=alpha (starts at the pruned model) or none")


@dataclass
class LoraStarConfig(OneShotPruneConfig):
    r: int = 8  # LoRA rank (Wanda's lora_ft and the SPP reference use r=8, alpha=16, dropout=0.05)
    lora_alpha: float = 16.0
    dropout: float = 0.05
    remask: bool = True  # false = plain LoRA on the pruned model (dense export)


# registry name -> schema; a test checks these names equal sparsetune.registry.METHODS.names()
METHOD_SCHEMAS: dict[str, type[MethodConfig]] = {
    "full": MethodConfig,
    "magnitude": ScheduledMaskConfig,
    "movement": MovementConfig,
    "pst": PSTConfig,
    "speft": SpeftConfig,
    "lora": LoraMethodConfig,
    "pissa": PissaMethodConfig,
    "spp": SPPConfig,
    "lora_star": LoraStarConfig,
}
