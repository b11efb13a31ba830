"""The run's whole training history as JSON lines: `<run dir>/history.jsonl`, one object per Trainer log.

Each line holds `step`, `epoch`, `kind` and the Trainer's logged values under the Trainer's names (loss, grad_norm,
learning_rate, eval_<split>_<metric>, ...), plus the method's sparsity at that point:
- `sparsity`: what the method's schedule asks of the masks in effect (methods with `scheduled(step)`); for the
  others their constant `target_sparsity()` (pruned once before training, or nothing pruned).
- `sparsity_measured`: the fraction of zeros in the masks in effect, for methods that keep masks (`achieved()`).
  Counted on the bool masks at every log (about 18 ms for BERT-base's 85M flags on one CPU thread); the methods
  already count them after every mask update, so logging adds at most one count per `train.logging_steps` steps.

Kinds: `train` (a logging step), `eval` (an evaluation during training), `train_end` (Trainer's end-of-training
summary) and `final_eval` (evaluations outside training: the merged, exported model).

The callback also adds `sparsity` (and `sparsity_measured`) to the training log dict it is handed, so the
callbacks after it (the trackers of `logger=`, the train.log lines) show them too: TensorBoard and wandb as
`train/sparsity`, once per logging step.

Append-only and resume-safe: a resumed run first drops the lines past its checkpoint's step (and the endings of
an earlier attempt), a fresh run starts the file anew. Written by the main process only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import TrainerCallback

HISTORY_FILE = "history.jsonl"
TRAINING_KINDS = ("train", "eval")  # what a resumed run keeps up to its checkpoint's step


def log_kind(logs: dict, training: bool) -> str:
    if any(k.startswith("eval_") for k in logs):
        return "eval" if training else "final_eval"
    if "train_runtime" in logs:
        return "train_end"
    return "train"


def scheduled_sparsity(method, step: int, training: bool) -> float:
    """The sparsity the method's masks hold after `step` optimizer steps. During training the masks in effect were
    set before the last step, for step - 1 (SparsityScheduleCallback); at the end of training they are set for the
    final step."""
    scheduled = getattr(method, "scheduled", None)
    if scheduled is None:
        return float(method.target_sparsity())
    return float(scheduled(max(step - 1, 0) if training else step))


def measured_sparsity(method) -> float | None:
    """Zeros in the method's masks, where it keeps any (none once merged: the layers are plain again)."""
    achieved = getattr(method, "achieved", None)
    if achieved is None or not getattr(method, "layers", None):
        return None
    return float(achieved())


def _plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return float(value)  # numpy / 0-d torch scalars
    except (TypeError, ValueError):
        return str(value)


def read_history(path: str | Path) -> list[dict]:
    """The entries of a history file; a torn last line (a killed process) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def keep_until(path: Path, step: int) -> None:
    """Rewrite the file with the training entries up to `step` (atomic: a kill leaves the old or the new file)."""
    kept = [e for e in read_history(path) if e.get("kind") in TRAINING_KINDS and e.get("step", 0) <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(e) + "\n" for e in kept), encoding="utf-8")
    os.replace(tmp, path)


class TrainingHistory(TrainerCallback):
    """Appends one line per Trainer log to `path`; `resuming`: the run continues from a checkpoint."""

    def __init__(self, path: str | Path, method, resuming: bool = False):
        self.path = Path(path)
        self.method = method
        self.resuming = resuming
        self._prepared = False
        self._training = False

    def _prepare(self, state) -> None:
        if self._prepared:
            return
        self._prepared = True
        if self.resuming and self.path.exists():
            keep_until(self.path, state.global_step)
        elif not self.resuming:
            self.path.unlink(missing_ok=True)  # an earlier attempt's lines (overwrite=true) are not this run's

    def on_train_begin(self, args, state, control, **kw):
        self._training = True
        if state.is_world_process_zero:
            self._prepare(state)

    def on_train_end(self, args, state, control, **kw):
        self._training = False

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs or not state.is_world_process_zero:
            return
        self._prepare(state)
        kind = log_kind(logs, self._training)
        sparsity = {"sparsity": scheduled_sparsity(self.method, state.global_step, self._training)}
        measured = measured_sparsity(self.method)
        if measured is not None:
            sparsity["sparsity_measured"] = measured
        if kind == "train":  # the trackers after this callback log it as train/sparsity, once per logging step
            logs.update(sparsity)
        entry = {"step": state.global_step, "epoch": state.epoch, "kind": kind}
        entry.update((k, _plain(v)) for k, v in {**logs, **sparsity}.items() if k not in entry)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

