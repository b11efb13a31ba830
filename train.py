"""python train.py [group=option ...] [key=value ...] — see README.md."""
import sys

import hydra
from omegaconf import DictConfig

import sparsetune.schema
from sparsetune.cli import main_entry

sparsetune.schema.register()
_job_started = False


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    global _job_started
    _job_started = True
    main_entry(cfg)


if __name__ == "__main__":
    try:
        main()
    except SystemExit as e:
        # Hydra exits 1 when the command line does not compose (unknown option, wrong type): that is
        # bad input, exit 2 like every other user error; a job's own exit code passes through.
        sys.exit(2 if e.code == 1 and not _job_started else e.code)
