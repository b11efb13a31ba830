"""E2E, DART and WebNLG rows -> (source, reference) pairs, with the sources linearised as in the
LoRA / PST GPT-2 code (microsoft/LoRA examples/NLG): "subject : relation : object | ..." for triples.

  - E2E: the MR "name[The Vaults], eatType[pub]" becomes "name : The Vaults | eatType : pub" (same
    " : " / " | " separators as the triples). Files: trainset.csv / devset.csv ("mr,ref", CRLF, quoted),
    testset_w_refs.csv ("mr","ref", LF); hub rows: meaning_representation / human_reference.
  - DART: every annotation of a tripleset is a reference; relations are lower-cased (as LoRA does).
    Annotations come as a list of {source, text} (the json files) or as {source: [...], text: [...]} (hub).
  - WebNLG 2017: the modified tripleset; only lexicalisations with comment == "good" (as LoRA does).
    Files in LoRA's layout {"entries": [{"<id>": {...}}]}; hub rows: modified_triple_sets / lex.
A row that does not fit its layout is a DataError naming the file and line (rows.convert_rows).
Standard library only: the CLI's data preflight reads and converts local files with local_pairs before
torch loads, and the loader (data_to_text.py) reuses the rows it read.
"""
from __future__ import annotations

import re
from pathlib import Path

from .errors import DataError
from .local_files import local_paths, read_records, require_splits
from .read_cache import cached_read
from .rows import convert_rows

LAYOUTS = {
    "e2e": {"train": "trainset.csv", "validation": "devset.csv", "test": "testset_w_refs.csv"},
    "dart": {"train": "dart-v1.1.1-full-train.json", "validation": "dart-v1.1.1-full-dev.json", "test": "dart-v1.1.1-full-test.json"},
    "webnlg": {"train": "train.json", "validation": "dev.json", "test": "test.json"},
}

MR_SLOT = re.compile(r"\s*([^\[\],]+?)\s*\[([^\]]*)\]\s*(?:,|$)")


def triples_text(triples: list[tuple[str, str, str]]) -> str:
    return " | ".join(f"{s} : {r} : {o}" for s, r, o in triples)


def e2e_source(mr: str) -> str:
    """'name[The Vaults], eatType[pub]' -> 'name : The Vaults | eatType : pub'."""
    slots, pos = [], 0
    while pos < len(mr):
        m = MR_SLOT.match(mr, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot parse the E2E meaning representation {mr!r} at position {pos}")
        slots.append(f"{m.group(1)} : {m.group(2)}")
        pos = m.end()
    if not slots:
        raise ValueError(f"empty E2E meaning representation {mr!r}")
    return " | ".join(slots)


def e2e_pairs(rows: list[dict], source: str = "") -> list[dict]:
    """CSV rows (mr/MR, ref) or hub rows (meaning_representation, human_reference)."""
    if not rows:
        return []
    if not isinstance(rows, list) or not isinstance(rows[0], dict):
        raise DataError(f"{source or 'E2E data'}: expected rows with an 'mr' and a 'ref' column")
    keys = {k.lower(): k for k in rows[0]}
    mr_key = keys.get("mr") or keys.get("meaning_representation")
    ref_key = keys.get("ref") or keys.get("human_reference")
    if mr_key is None or ref_key is None:
        raise DataError(f"{source + ': ' if source else ''}E2E rows need an 'mr' and a 'ref' column "
                        f"(the MR-only testset.csv has no references); got {list(rows[0])}")
    return convert_rows(rows, lambda r: {"source": e2e_source(r[mr_key]), "target": r[ref_key].strip()},
                        "an E2E row: a meaning representation like 'name[The Vaults], eatType[pub]' and a reference text",
                        source)


def _annotations(ann) -> list[str]:
    if isinstance(ann, dict):  # hub: {source: [...], text: [...]}
        return list(ann["text"])
    return [a["text"] for a in ann]


def _dart_row(r: dict) -> list[dict]:
    if "tripleset" not in r or "annotations" not in r:
        raise KeyError(f"DART rows need 'tripleset' and 'annotations'; got {sorted(r)}")
    source = triples_text([(s, rel.lower(), o) for s, rel, o in r["tripleset"]])
    return [{"source": source, "target": t.strip()} for t in _annotations(r["annotations"])]


def dart_pairs(rows: list[dict], source: str = "") -> list[dict]:
    if not isinstance(rows, list):
        raise DataError(f"{source or 'DART data'}: expected a list of rows with 'tripleset' and 'annotations'")
    expected = "a DART row: 'tripleset' [[subject, relation, object], ...] and 'annotations' [{source, text}, ...]"
    return [p for pairs in convert_rows(rows, _dart_row, expected, source) for p in pairs]


def _webnlg_entry(entry: dict) -> list[dict]:
    """One data unit in LoRA's json layout: modifiedtripleset + lexicalisations."""
    source = triples_text([(t["subject"], t["property"], t["object"]) for t in entry["modifiedtripleset"]])
    return [{"source": source, "target": lex["lex"].strip()} for lex in entry["lexicalisations"] if lex.get("comment") == "good"]


def _webnlg_hub_row(row: dict) -> list[dict]:
    """A hub row: modified_triple_sets.mtriple_set = [["s | p | o", ...]], lex = {comment: [...], text: [...]}."""
    triples = [tuple(part.strip() for part in t.split(" | ")) for t in row["modified_triple_sets"]["mtriple_set"][0]]
    source = triples_text(triples)
    lex = row["lex"]
    return [{"source": source, "target": text.strip()} for text, comment in zip(lex["text"], lex["comment"]) if comment == "good"]


def webnlg_pairs(data, source: str = "") -> list[dict]:
    source = str(getattr(data, "path", "") or source)
    if isinstance(data, dict) and isinstance(data.get("entries"), list):
        expected = "a WebNLG entry {'<id>': {modifiedtripleset: [{subject, property, object}], lexicalisations: [{lex, comment}]}}"
        entries = convert_rows(data["entries"], lambda item: [p for e in item.values() for p in _webnlg_entry(e)], expected,
                               f"{source} entries".strip())
        return [p for pairs in entries for p in pairs]
    if isinstance(data, list) and (not data or isinstance(data[0], dict) and "modified_triple_sets" in data[0]):
        expected = "a WebNLG row with modified_triple_sets.mtriple_set and lex {comment, text}"
        return [p for pairs in convert_rows(data, _webnlg_hub_row, expected, source) for p in pairs]
    raise DataError(f"{source + ': ' if source else ''}WebNLG data must be LoRA's json layout "
                    "{'entries': [{'<id>': {...}}]} or hub rows with modified_triple_sets/lex")


PAIRS = {"e2e": e2e_pairs, "dart": dart_pairs, "webnlg": webnlg_pairs}


def local_pairs(task, fmt: str, splits: list[str]) -> tuple[dict[str, list[dict]], str] | None:
    """{split: [{source, target}]} from task.data_files or task.data_dir, and where they came from; None: the hub."""
    layout = LAYOUTS[fmt]
    paths = local_paths(task, layout)
    if paths is None:
        return None
    require_splits(paths, splits, task, layout)
    return {s: file_pairs(fmt, paths[s]) for s in splits}, f"files { {s: str(paths[s]) for s in splits} }"


def file_pairs(fmt: str, path: Path) -> list[dict]:
    """One local file's (source, target) pairs; those the preflight made are kept for the loader."""
    return cached_read(path, ("pairs", fmt), lambda: PAIRS[fmt](read_records(path), str(path)))


def check_local(task) -> None:
    """The data preflight: the train and eval splits, read and converted as the loader does."""
    local_pairs(task, task.loader, list(dict.fromkeys([task.train_split, *task.eval_splits])))


def group_references(pairs: list[dict]) -> list[tuple[str, list[str]]]:
    """[(source, [references])] in order of each source's first appearance."""
    groups: dict[str, list[str]] = {}
    for p in pairs:
        groups.setdefault(p["source"], []).append(p["target"])
    return list(groups.items())
