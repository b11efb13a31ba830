"""Weight matrices of a run's exported model/ (save_pretrained safetensors, one file or sharded), read one at a time
so a large model never sits in memory whole."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import safe_open

from ..errors import ConfigError

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


def has_export(model_dir: Path) -> bool:
    return (model_dir / SINGLE).is_file() or (model_dir / INDEX).is_file()


class ExportedWeights:
    """Tensor name -> the safetensors file holding it; `matrix(name)` loads that one tensor as float32."""

    def __init__(self, model_dir: Path):
        self.dir = Path(model_dir)
        if (self.dir / SINGLE).is_file():
            with safe_open(str(self.dir / SINGLE), framework="pt") as f:
                self.files = {key: self.dir / SINGLE for key in f.keys()}
        elif (self.dir / INDEX).is_file():
            weight_map = json.loads((self.dir / INDEX).read_text(encoding="utf-8"))["weight_map"]
            self.files = {key: self.dir / name for key, name in weight_map.items()}
        else:
            raise ConfigError(f"{self.dir}: no {SINGLE} or {INDEX} (not an exported model)")

    def __contains__(self, key: str) -> bool:
        return key in self.files

    def shape(self, key: str) -> tuple[int, ...]:
        with safe_open(str(self.files[key]), framework="pt") as f:
            return tuple(f.get_slice(key).get_shape())

    def matrix(self, key: str) -> np.ndarray:
        with safe_open(str(self.files[key]), framework="pt") as f:
            return f.get_tensor(key).float().numpy()  # via torch: numpy has no bfloat16
