"""Where a run is (phase, completed optimizer steps): what the record of an interrupted run states."""
from __future__ import annotations

from transformers import TrainerCallback


class Progress(TrainerCallback):
    def __init__(self):
        self.phase = "setup"  # setup | training | evaluating | exporting
        self.step: int | None = None

    def on_train_begin(self, args, state, control, **kw):
        self.phase, self.step = "training", state.global_step

    def on_step_end(self, args, state, control, **kw):
        self.step = state.global_step
