"""The Hydra app behind `python train.py ...`, the `sparsetune` console script and `python -m sparsetune`: where its
configs are, the summary line, and multirun jobs that fail without stopping the sweep.

Exit codes of a single run: 0 completed (or already completed, with resume=auto), 2 bad input or an unusable run
dir (occupied, in use, unwritable, disk full), 3 diverged, 130 / 143 interrupted by SIGINT / SIGTERM; each
with one line on stderr, no traceback. Anything else is a bug and keeps its traceback."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig

from . import gpu_pinning, interrupts, run_names  # noqa: F401  (run_names registers ${run_token:} for hydra.run.dir)
from .hub import OfflineError
from .objective import AUTO, objective_value, worst_for
from .run_dir import record_bad_input
from .validate import ConfigError, preflight

# bad input: one clear message and exit code 2, no traceback (results.json still says status: failed)
USER_ERRORS = (ConfigError, OfflineError, FileNotFoundError, ModuleNotFoundError)

log = logging.getLogger("sparsetune")


def config_dir() -> Path:
    """Hydra's config dir: the copy an installed wheel ships as sparsetune/conf (setup.py maps the top-level conf/
    there), else the checkout's top-level conf/ (python train.py, an editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise SystemExit(f"error: no configs: neither {here / 'conf'} (an installed wheel) nor {here.parent / 'conf'} "
                     "(a checkout) has train.yaml; reinstall sparsetune")


def app() -> None:
    """The command line `[group=option ...] [key=value ...]` (and Hydra's -m, --help, --cfg ...), run as
    train.py, the `sparsetune` console script or `python -m sparsetune`. The run's log is <run dir>/train.log
    whichever of them runs (hydra.job.name in conf/train.yaml). `sparsetune plot ...` draws runs instead
    (plot_command.py): a bare word is never a Hydra override, so the two cannot be confused."""
    if sys.argv[1:2] == ["plot"]:
        from .plot_command import main as plot_main

        sys.exit(plot_main(sys.argv[2:]))
    import hydra

    from . import schema

    schema.register()
    share_launch()
    held = HeldStderr()  # Hydra's own composition errors, until the job starts

    @hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
    def main(cfg: DictConfig) -> float | None:
        held.release()
        return main_entry(cfg)  # the objective, for sweepers such as Optuna

    sys.stderr = held
    try:
        main()
    except SystemExit as e:
        # Hydra exits 1 when the command line does not compose (unknown option, wrong type): that is bad input,
        # reported like every other user error (one line, exit 2); a job's own exit code passes through
        if e.code == 1 and not held.released:
            held.release(one_line=True)
            sys.exit(2)
        raise
    finally:
        held.release()


def share_launch() -> None:
    """torchrun / accelerate launch: join the process group and take rank 0's run name (one run dir for all ranks);
    the other ranks log to train_rank<N>.log there and leave .hydra/ to rank 0."""
    from . import distributed

    info = distributed.launch()
    if not info.distributed:
        return
    try:
        distributed.init()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    run_names.share(distributed.on_main(run_names.start_stamp))
    if not info.main:
        sys.argv += [f"hydra.job.name=train_rank{info.rank}", "hydra.output_subdir=null"]


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


def main_entry(cfg: DictConfig) -> float | None:
    """Run one job; returns its objective (for a multirun job that failed: the worst value for the sweeper's
    direction, so an Optuna search goes on)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from . import distributed

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    failed = worst_for(HydraConfig.get().sweeper.get("direction"))  # what a failed trial returns to Optuna
    main = distributed.is_main()
    distributed.barrier()  # every rank's run-dir check (RunDirCheck) is done before rank 0 writes into it
    try:
        # a parallel launcher's worker (joblib): one GPU for this process, before CUDA starts in it
        gpu_pinning.pin_one_gpu(str(cfg.hardware.device), HydraConfig.get().launcher.get("_target_"))
        try:
            preflight(cfg)  # config and local data-file checks, before torch and transformers load (~1 s)
        except ConfigError as e:
            if main:
                record_bad_input(cfg, Path(HydraConfig.get().runtime.output_dir), e)
            raise
        from .run import run

        res = run(cfg)
    except KeyboardInterrupt as e:  # SIGINT / SIGTERM (the sweep stops too): the record says interrupted
        print(interrupted_line(e), file=sys.stderr, flush=True)
        raise SystemExit(interrupts.exit_code(e)) from None
    except USER_ERRORS as e:
        if multirun:
            log.error("job failed (the sweep goes on): %s", e)
            return objective_value(cfg.get("objective", AUTO), None, failed)
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except Exception as e:
        from .divergence import Diverged
        from .run import diverged_message

        if isinstance(e, Diverged):
            if multirun:
                log.error("job diverged (the sweep goes on): %s", diverged_message(e))
                return objective_value(cfg.get("objective", AUTO), None, failed)
            print(f"error: {diverged_message(e)} (recorded as status: diverged, nothing exported)", file=sys.stderr, flush=True)
            raise SystemExit(3) from None
        if not multirun:
            raise
        log.error("job failed (the sweep goes on): %s: %s", type(e).__name__, e)
        return objective_value(cfg.get("objective", AUTO), None, failed)
    if main:
        print("\n" + summary(res), flush=True)
    return objective_value(cfg.get("objective", AUTO), res, failed)


class HeldStderr:
    """stderr for the time before a job starts: what Hydra writes there (its composition errors: several lines
    and a hint about HYDRA_FULL_ERROR) is held, then passed on as it was, or folded into one `error:` line when
    the command line did not compose."""

    def __init__(self):
        self.real, self.held, self.released = sys.stderr, [], False

    def write(self, text: str) -> int:
        if self.released:
            return self.real.write(text)
        self.held.append(text)
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __reduce__(self):
        # a parallel launcher (joblib, submitit) ships the task function, and this object with it, to other processes,
        # where the job has started already: there it holds nothing
        return (_released_holder, ())

    def release(self, one_line: bool = False) -> None:
        if self.released:
            return
        self.released = True
        sys.stderr = self.real
        text = "".join(self.held)
        if one_line and text.strip():
            text = "error: " + fold_hydra_error(text) + "\n"
        self.real.write(text)
        self.real.flush()


def _released_holder() -> HeldStderr:
    held = HeldStderr()
    held.released = True
    return held


# config groups that only exist once an extra is installed (hydra/launcher=slurm and local_tasks build on submitit's)
PLUGIN_EXTRAS = {"hydra/sweeper/optuna": "optuna", "hydra/launcher/joblib": "cluster", "hydra/launcher/submitit_slurm": "cluster",
                 "hydra/launcher/submitit_local": "cluster"}


def fold_hydra_error(text: str) -> str:
    """Hydra's multi-line composition error as one line: `In 'train': Could not find 'method/nope'; available
    options in 'method': full, lora, ...`."""
    text = text.split("Config search path:")[0]  # Hydra's search-path dump after the options list
    internals = ("HYDRA_FULL_ERROR", "reference_type=", "object_type=")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not any(i in line for i in internals)]
    head, options = [], []
    for line in lines:
        (options if options or line.lower().startswith("available options") else head).append(line)
    folded = "; ".join(head)
    if options:
        folded += f"; {options[0].rstrip(':').lower()}: " + ", ".join(options[1:])
    for plugin, extra in PLUGIN_EXTRAS.items():
        if f"'{plugin}'" in folded:
            folded += f" (a Hydra plugin: install it with pip install \".[{extra}]\")"
    return folded


def interrupted_line(e: BaseException) -> str:
    rec = getattr(e, "run_record", None) or {}
    where = f" at step {rec['last_step']}" if rec.get("last_step") is not None else ""
    line = f"interrupted by {interrupts.signal_name(e)}{where}"
    if rec.get("run_dir"):
        ckpt = rec.get("last_checkpoint")
        line += (f"; recorded in {rec['run_dir']}/results.json; continue with resume=auto hydra.run.dir={rec['run_dir']}"
                 + (f" (from {Path(ckpt).name})" if ckpt else " (no complete checkpoint yet: starts over)"))
    return line
