"""Is model.path a model directory? Checked with the standard library only, so a wrong path fails in the
config check, before torch or transformers load and long before from_pretrained's own error."""
from __future__ import annotations

import json
from pathlib import Path

WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
             "sentencepiece.bpe.model")
LAYOUT_HINT = "expected a transformers model directory as save_pretrained writes it (config.json, weights, tokenizer files)"


def model_dir_problem(path: str) -> str | None:
    """One line saying what makes `path` unusable as model.path, or None when it looks like a model."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return f"model.path={path} is not a directory; {LAYOUT_HINT}"
    config = p / "config.json"
    if not config.is_file():
        adapter = " (it holds a PEFT adapter: merge it into its base model and save that)" \
            if (p / "adapter_config.json").is_file() else ""
        return f"model.path={path} has no config.json{adapter}; {LAYOUT_HINT}"
    try:
        fields = json.loads(config.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return f"model.path={path}: config.json is not UTF-8 text; {LAYOUT_HINT}"
    except json.JSONDecodeError as e:
        return f"model.path={path}: config.json is not valid JSON (line {e.lineno}: {e.msg}); {LAYOUT_HINT}"
    if not isinstance(fields, dict) or not isinstance(fields.get("model_type"), str):
        return f"model.path={path}: config.json has no 'model_type', so it is not a transformers model config; {LAYOUT_HINT}"
    missing = [f"{what} (none of {', '.join(names)})" for what, names in (("weights", WEIGHTS), ("tokenizer files", TOKENIZER))
               if not any((p / name).is_file() for name in names)]
    if missing:
        return f"model.path={path} has no {' and no '.join(missing)}; {LAYOUT_HINT}"
    return None
