"""python train.py [group=option ...] [key=value ...] — see README.md."""
import hydra
from omegaconf import DictConfig

import sparsetune.schema
from sparsetune.cli import main_entry

sparsetune.schema.register()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    main_entry(cfg)


if __name__ == "__main__":
    main()
