"""The experiment trackers of `logger=`: transformers' TensorBoard and wandb callbacks, each also given the run's
resolved config. run() places them after the history callback (history.py), so they log its `train/sparsity`.

- tensorboard: event files under `<run dir>/checkpoints/runs/<date>_<host>/` (the Trainer's default place), with
  the config as text (tag `config`, YAML) and as hparams (flattened `a.b.c` keys, the HParams dashboard).
- wandb: the run goes into `<run dir>/wandb/` (offline by default: `offline-run-*`; `wandb sync` uploads it later),
  config = the resolved config. WANDB_MODE / WANDB_PROJECT from the environment win over logger.mode / .project.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from transformers.integrations import TensorBoardCallback, WandbCallback
from transformers.integrations.integration_utils import default_logdir

from .errors import ConfigError

LOGGERS = ("none", "tensorboard", "wandb")
HPARAM_METRICS = ("train/loss", "train/sparsity")  # scalars the HParams dashboard shows beside the config


def flat_hparams(config: dict, prefix: str = "") -> dict:
    """Nested config -> {"a.b": value} with values TensorBoard's hparams take (numbers, strings, bools)."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_hparams(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:  # None, lists
            out[name] = json.dumps(value)
    return out


def write_config(writer, config: dict) -> None:
    from torch.utils.tensorboard.summary import hparams

    yaml = OmegaConf.to_yaml(config)
    writer.add_text("config", "    " + yaml.replace("\n", "\n    "))  # indented: the text plugin shows it as code
    for summary in hparams(flat_hparams(config), {m: 0.0 for m in HPARAM_METRICS}):
        writer.file_writer.add_summary(summary)
    writer.flush()


class TensorBoardWithConfig(TensorBoardCallback):
    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self._config_written = False

    def _init_summary_writer(self, args):
        if self.logging_dir is None:  # a first log outside training (evaluate-only) would otherwise go to ./runs
            self.logging_dir = os.path.join(args.output_dir, default_logdir())
        super()._init_summary_writer(args)
        if self.tb_writer is not None and not self._config_written:
            write_config(self.tb_writer, self.config)
            self._config_written = True


class WandbWithConfig(WandbCallback):
    def __init__(self, config: dict, run_dir: Path, project: str):
        super().__init__()
        self.config = config
        self.run_dir = Path(run_dir).resolve()
        self.project = project

    def setup(self, args, state, model, **kw):
        if state.is_world_process_zero:
            run = self._wandb.run
            if run is not None and self.run_dir not in Path(getattr(run, "dir", None) or "/").resolve().parents:
                self._wandb.finish()  # an earlier run of this process (a multirun job) is over
            if self._wandb.run is None:
                self._wandb.init(project=self.project, name=args.run_name, dir=str(self.run_dir), config=self.config)
        super().setup(args, state, model, **kw)  # adds the TrainingArguments and the model config


def tracker_callbacks(cfg: DictConfig, run_dir: Path) -> list:
    name = cfg.logger.name
    if name not in LOGGERS:
        raise ConfigError(f"unknown logger {name!r}; valid: {', '.join(LOGGERS)}")
    if name == "none":
        return []
    config = OmegaConf.to_container(cfg, resolve=True)
    if name == "tensorboard":
        return [TensorBoardWithConfig(config)]
    return [WandbWithConfig(config, run_dir, os.getenv("WANDB_PROJECT") or cfg.logger.get("project") or "sparsetune")]
