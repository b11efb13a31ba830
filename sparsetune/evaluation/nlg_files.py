"""Plain-text outputs and references in the E2E scorer's layout (tuetschek/e2e-metrics, read_lines):

  outputs     one per line (an empty line is an empty output);
  references  the references of one input on consecutive lines, inputs separated by one empty line; a file
              without any empty line holds one reference per input, one per line (or, for a single
              output, all of its references).
Lines are stripped (CRLF and a UTF-8 BOM are fine). Problems are ValueErrors naming the file and line.
"""
from __future__ import annotations

from pathlib import Path


def _lines(path: str | Path) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return [line.strip() for line in text.splitlines()]


def read_outputs(path: str | Path) -> list[str]:
    lines = _lines(path)
    if not lines:
        raise ValueError(f"{path}: empty file, expected one output per line")
    return lines


def _content(lines: list[str]) -> list[str]:
    while lines and not lines[-1]:  # trailing empty lines end the file, they open no group
        lines = lines[:-1]
    return lines


def parse_reference_groups(lines: list[str], source: str = "references") -> list[list[str]]:
    """[[refs of input 1], [refs of input 2], ...] from the lines of a references file."""
    lines = _content(lines)
    if not lines:
        raise ValueError(f"{source}: no references")
    if "" not in lines:
        return [[line] for line in lines]
    groups: list[list[str]] = [[]]
    for number, line in enumerate(lines, start=1):
        if line:
            groups[-1].append(line)
        elif not groups[-1]:
            raise ValueError(f"{source} line {number}: an input with no reference (two empty lines in a row, "
                             "or an empty first line); separate inputs with exactly one empty line")
        else:
            groups.append([])
    return groups


def read_reference_groups(path: str | Path) -> list[list[str]]:
    return parse_reference_groups(_lines(path), str(path))


def read_pair(hyp_path: str | Path, refs_path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Outputs and their reference groups; a count mismatch is an error that says how the groups were read.
    With a single output, a references file without empty lines holds that output's references (the E2E
    scorer would read one reference per input there and fail)."""
    hyps, lines = read_outputs(hyp_path), _lines(refs_path)
    refs, separated = parse_reference_groups(lines, str(refs_path)), "" in _content(lines)
    if len(hyps) == 1 and not separated:
        refs = [[g[0] for g in refs]]
    if len(hyps) != len(refs):
        layout = "groups separated by one empty line" if separated else "one reference per line (the file has no empty line)"
        raise ValueError(f"{hyp_path} has {len(hyps)} outputs but {refs_path} has {len(refs)} reference groups "
                         f"(read as {layout}); there must be one group per output, in the same order")
    return hyps, refs
