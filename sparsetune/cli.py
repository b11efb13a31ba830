"""What train.py does around run(): the summary line, and multirun jobs that fail without stopping the sweep."""
from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig

from .hub import OfflineError
from .run import run
from .validate import ConfigError

# bad input: one clear message and exit code 2, no traceback (results.json still says status: failed)
USER_ERRORS = (ConfigError, OfflineError, FileNotFoundError, ModuleNotFoundError)

log = logging.getLogger("sparsetune")


def summary(res: dict) -> str:
    m, p, s = res.get("metrics", {}), res["params"], res["sparsity"]
    ev = m.get("eval", {})
    shown = ", ".join(f"{k}={v:.4f}" for k, v in ev.items() if k not in ("runtime", "samples_per_second", "steps_per_second", "epoch"))
    ach = s.get("achieved")
    lines = [
        f"method={res['config']['method']['name']} task={res['config']['task']['name']} model={res['config']['model']['name']}",
        f"eval: {shown or '(none)'}",
        f"sparsity: target={s['target']:.4f} achieved={'n/a' if ach is None else f'{ach:.4f}'}",
        f"trainable params: {p['trainable']:,} / {p['total']:,} ({p['trainable_percent']:.3f}%)",
    ]
    if "timing" in res:
        t = res["timing"]
        lines.append(f"time: {t['train_seconds']:.1f}s train, {t['steps']} steps ({t['seconds_per_step']:.3f}s/step)")
    lines.append(f"results: {res['run_dir']}/results.json")
    return "\n".join(lines)


def main_entry(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        res = run(cfg)
    except USER_ERRORS as e:
        if multirun:
            log.error("job failed (the sweep goes on): %s", e)
            return
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except Exception as e:
        if not multirun:
            raise
        log.error("job failed (the sweep goes on): %s: %s", type(e).__name__, e)
        return
    print("\n" + summary(res), flush=True)
