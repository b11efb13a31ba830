"""Trainer callbacks shared by the sparse methods."""
from __future__ import annotations

from collections.abc import Callable

from transformers import TrainerCallback


class SparsityScheduleCallback(TrainerCallback):
    """Before every optimizer step t, asks the method to bring its masks to the scheduled sparsity at t
    (t = completed optimizer steps, from the Trainer state, so a resumed run recomputes the same value);
    after every optimizer step, lets the method re-impose its zeros."""

    def __init__(self, update: Callable[[int], None], after_step: Callable[[], None] | None = None):
        self.update = update
        self.after_step = after_step

    def on_step_begin(self, args, state, control, **kw):
        self.update(state.global_step)

    def on_optimizer_step(self, args, state, control, **kw):
        if self.after_step is not None:
            self.after_step()

    def on_train_end(self, args, state, control, **kw):
        self.update(state.global_step)
