"""E2E, DART and WebNLG rows -> (source, reference) pairs, with the sources linearised as in the
LoRA / PST GPT-2 code (microsoft/LoRA examples/NLG): "subject : relation : object | ..." for triples.

  - E2E: the MR "name[The Vaults], eatType[pub]" becomes "name : The Vaults | eatType : pub" (same
    " : " / " | " separators as the triples). Files: trainset.csv / devset.csv ("mr,ref", CRLF, quoted),
    testset_w_refs.csv ("mr","ref", LF); hub rows: meaning_representation / human_reference.
  - DART: every annotation of a tripleset is a reference; relations are lower-cased (as LoRA does).
    Annotations come as a list of {source, text} (the json files) or as {source: [...], text: [...]} (hub).
  - WebNLG 2017: the modified tripleset; only lexicalisations with comment == "good" (as LoRA does).
    Files in LoRA's layout {"entries": [{"<id>": {...}}]}; hub rows: modified_triple_sets / lex.
"""
from __future__ import annotations

import re

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


def e2e_pairs(rows: list[dict]) -> list[dict]:
    """CSV rows (mr/MR, ref) or hub rows (meaning_representation, human_reference)."""
    if not rows:
        return []
    keys = {k.lower(): k for k in rows[0]}
    mr_key = keys.get("mr") or keys.get("meaning_representation")
    ref_key = keys.get("ref") or keys.get("human_reference")
    if mr_key is None or ref_key is None:
        raise ValueError(f"E2E rows need an 'mr' and a 'ref' column (the MR-only testset.csv has no references); got {list(rows[0])}")
    return [{"source": e2e_source(r[mr_key]), "target": r[ref_key].strip()} for r in rows]


def _annotations(ann) -> list[str]:
    if isinstance(ann, dict):  # hub: {source: [...], text: [...]}
        return list(ann["text"])
    return [a["text"] for a in ann]


def dart_pairs(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        if "tripleset" not in r or "annotations" not in r:
            raise ValueError(f"DART rows need 'tripleset' and 'annotations'; got {sorted(r)}")
        source = triples_text([(s, rel.lower(), o) for s, rel, o in r["tripleset"]])
        out += [{"source": source, "target": t.strip()} for t in _annotations(r["annotations"])]
    return out


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


def webnlg_pairs(data) -> list[dict]:
    if isinstance(data, dict) and "entries" in data:
        return [p for item in data["entries"] for entry in item.values() for p in _webnlg_entry(entry)]
    if isinstance(data, list) and (not data or "modified_triple_sets" in data[0]):
        return [p for row in data for p in _webnlg_hub_row(row)]
    raise ValueError("WebNLG data must be LoRA's json layout {'entries': [{'<id>': {...}}]} or hub rows with modified_triple_sets/lex")


PAIRS = {"e2e": e2e_pairs, "dart": dart_pairs, "webnlg": webnlg_pairs}


def group_references(pairs: list[dict]) -> list[tuple[str, list[str]]]:
    """[(source, [references])] in order of each source's first appearance."""
    groups: dict[str, list[str]] = {}
    for p in pairs:
        groups.setdefault(p["source"], []).append(p["target"])
    return list(groups.items())
