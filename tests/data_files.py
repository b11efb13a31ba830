"""Small data files written by the data tests (GLUE TSV, jsonl)."""
from __future__ import annotations

import json
from pathlib import Path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


def sst2_tsv(labels: list[str]) -> str:
    return "sentence\tlabel\n" + "".join(f"a film {i} .\t{lab}\n" for i, lab in enumerate(labels))
