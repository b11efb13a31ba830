"""Checkpoints that are complete or absent, and resuming from the last complete one.

A checkpoint is written into `checkpoints/.staging/checkpoint-N` and renamed to `checkpoints/checkpoint-N`
when every file is there (weights, optimizer, RNG, trainer_state.json, the method's own state). A process
killed mid-save leaves only the staging dir, which neither get_last_checkpoint nor rotation ever sees.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from .distributed import barrier, on_main
from .run_dir import disk_full, no_space
from .training import MethodTrainer

log = logging.getLogger("sparsetune")

STAGING = ".staging"
METHOD_STATE = "method_state.json"  # what a method keeps outside tensors (e.g. its mask-update history)
_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def is_complete(ckpt: Path) -> bool:
    # trainer_state.json is the last file Trainer writes into a checkpoint (checkpoints from before the
    # atomic rename, or copied by hand, can lack it)
    return (ckpt / "trainer_state.json").is_file()


def last_complete_checkpoint(ckpt_dir: Path) -> Path | None:
    """The highest-step complete checkpoint-N under ckpt_dir; incomplete ones are skipped with a note."""
    if not ckpt_dir.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in ckpt_dir.iterdir() if p.is_dir() and (m := _NAME.match(p.name))),
                   reverse=True)
    for _, path in found:
        if is_complete(path):
            return path
        log.warning("skipping incomplete checkpoint %s (no trainer_state.json: its save was interrupted)", path)
    return None


def resume_checkpoint(cfg: DictConfig, ckpt_dir: Path) -> str | None:
    """What `resume` asks for: auto = the last complete checkpoint of this run dir (none: start fresh);
    a path = that checkpoint, or the last complete one of that run dir."""
    if cfg.resume is None:
        return None
    if cfg.resume == "auto":
        found = last_complete_checkpoint(ckpt_dir)
    else:
        p = Path(str(cfg.resume))
        found = p if is_complete(p) else last_complete_checkpoint(p / "checkpoints")
    return str(found) if found else None


def read_method_state(ckpt: str | Path | None) -> dict | None:
    path = Path(ckpt) / METHOD_STATE if ckpt else None
    return json.loads(path.read_text()) if path and path.is_file() else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointingTrainer(MethodTrainer):
    """MethodTrainer with atomic checkpoints that carry the method's state, and a resume from the final
    checkpoint that trains nothing more."""

    def __init__(self, *a, method_state: Callable[[], dict] | None = None, **kw):
        self._method_state = method_state
        self._staging_root: str | None = None
        super().__init__(*a, **kw)

    def _get_output_dir(self, trial) -> str:
        return self._staging_root or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """Several processes (DDP): each writes its part into the staging dir (rank 0 the weights, optimizer and
        state, every rank its RNG state); rank 0 alone adds the method's state and renames, the others wait."""
        root = Path(self.args.output_dir)
        staging = root / STAGING
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        main = self.args.should_save
        on_main(lambda: shutil.rmtree(staging, ignore_errors=True))  # what a killed save left
        self._staging_root = str(staging)  # Trainer saves (and rotates) inside the staging dir
        try:
            super()._save_checkpoint(model, trial)
            barrier()  # every rank's files are in staging
            best = self.state.best_model_checkpoint
            if best and Path(best).parent == staging:  # Trainer named the best by where it saved it: the staging dir
                self.state.best_model_checkpoint = str(root / Path(best).name)
            else:
                best = None
            on_main(lambda: self._finish_checkpoint(root, staging, name, fix_best=best is not None))
        except BaseException as e:
            full = main and isinstance(e, Exception) and disk_full(e, staging)  # asked before the cleanup frees space
            if main:
                shutil.rmtree(staging, ignore_errors=True)  # no partial files left (a full disk gets its space back)
            if full:
                raise no_space(root / name) from e
            raise
        finally:
            self._staging_root = None
        if main:
            shutil.rmtree(staging, ignore_errors=True)
            rotate_checkpoints(output_dir=str(root), save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        barrier()  # a checkpoint rotated away is gone for every rank before any reads the dir

    def _finish_checkpoint(self, root: Path, staging: Path, name: str, fix_best: bool) -> None:
        if self._method_state is not None:
            (staging / name / METHOD_STATE).write_text(json.dumps(self._method_state()))
        if fix_best:
            self.state.save_to_json(str(staging / name / TRAINER_STATE_NAME))
        final = root / name
        if final.exists():  # the same step saved again: keep the old copy until the new one is in place
            os.replace(final, staging / f"old-{name}")
        os.replace(staging / name, final)
        _fsync_dir(root)

    def _run_epoch(self, *a, **kw):
        # Resumed from the final checkpoint (a kill during evaluation or export): Trainer would re-enter the
        # last epoch when max_steps ends inside one and train a step too many (101 of 100). Nothing is left.
        if self.state.global_step >= self.state.max_steps:
            self.control.should_training_stop = True
            return
        return super()._run_epoch(*a, **kw)
