"""python train.py [group=option ...] [key=value ...] — see README.md."""
import sys

import hydra
from omegaconf import DictConfig

import sparsetune.schema
from sparsetune.cli import HeldStderr, main_entry

sparsetune.schema.register()
_held = HeldStderr()  # Hydra's own composition errors, until the job starts


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    _held.release()
    return main_entry(cfg)  # the objective, for sweepers such as Optuna


if __name__ == "__main__":
    sys.stderr = _held
    try:
        main()
    except SystemExit as e:
        # Hydra exits 1 when the command line does not compose (unknown option, wrong type): that is bad input,
        # reported like every other user error (one line, exit 2); a job's own exit code passes through
        if e.code == 1 and not _held.released:
            _held.release(one_line=True)
            sys.exit(2)
        raise
    finally:
        _held.release()
