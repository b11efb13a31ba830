"""`python tests/die_during.py WHEN [train.py overrides...]`: train.py, but the process SIGKILLs itself at WHEN.

WHEN = save:N   inside the Nth checkpoint save, after the weights are written and before the optimizer state
                and trainer_state.json (a checkpoint half on disk)
       export   as the merged model's export begins (training and evaluation are done)

A kill -9 at an exact point, for the kill tests in test_interrupts.py; the product has no hook for it.
"""
import os
import runpy
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def die(*_a, **_kw):
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    when = sys.argv.pop(1)
    if when.startswith("save:"):
        from transformers import Trainer

        nth, calls, original = int(when.split(":")[1]), [0], Trainer._save_optimizer_and_scheduler

        def save_optimizer(self, output_dir):
            calls[0] += 1
            if calls[0] == nth:
                die()
            return original(self, output_dir)

        Trainer._save_optimizer_and_scheduler = save_optimizer
    elif when == "export":
        import sparsetune.run

        sparsetune.run.save_and_verify = die
    else:
        raise SystemExit(f"unknown WHEN {when!r}: save:N or export")
    sys.argv[0] = str(ROOT / "train.py")
    runpy.run_path(str(ROOT / "train.py"), run_name="__main__")


if __name__ == "__main__":
    main()
