"""Compare two runs of the same config, e.g. before and after a refactor that must not change behaviour.

    .venv/bin/python scripts/compare_runs.py RUN_BEFORE RUN_AFTER

Score files: the same files, and every column of every (trial, domain, split, perturbation, level, sample) row equal
(columns only in AFTER are listed as added). summary.json: every number equal outside `config`; keys added or
removed and texts changed are listed. Exits 1 when scores or numbers differ.
"""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path

import pyarrow.parquet as pq

KEYS = ["trial_id", "domain", "split", "perturbation", "level", "sample_id"]


def compare_scores(before: Path, after: Path) -> list[str]:
    problems, added, rows = [], set(), 0
    names_b = sorted(p.name for p in (before / "scores").glob("*.parquet"))
    names_a = sorted(p.name for p in (after / "scores").glob("*.parquet"))
    if names_b != names_a:
        return [f"score files differ: {sorted(set(names_b) ^ set(names_a))}"]
    for name in names_b:
        tb = pq.read_table(before / "scores" / name).sort_by([(k, "ascending") for k in KEYS])
        ta = pq.read_table(after / "scores" / name).sort_by([(k, "ascending") for k in KEYS])
        added |= set(ta.column_names) - set(tb.column_names)
        problems += [f"{name}: column {c} missing after" for c in tb.column_names if c not in ta.column_names]
        problems += [f"{name}: column {c} differs" for c in tb.column_names
                     if c in ta.column_names and not tb.column(c).equals(ta.column(c))]
        rows += tb.num_rows
    print(f"scores: {len(names_b)} files, {rows} rows compared; columns added: {sorted(added) or 'none'}")
    return problems


def _walk(a, b, path: str = ""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a:
            yield from (_walk(a[k], b[k], f"{path}/{k}") if k in b else [("removed", f"{path}/{k}")])
        yield from (("added", f"{path}/{k}") for k in b if k not in a)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield ("length", path)
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _walk(x, y, f"{path}[{i}]")
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if a != b:
            yield ("number", path)
    elif a != b:
        yield ("text", path)


def compare_summaries(before: Path, after: Path) -> list[str]:
    diffs = list(_walk(json.loads((before / "summary.json").read_text()),
                       json.loads((after / "summary.json").read_text())))
    kinds = collections.Counter((kind, re.sub(r"\[\d+\]", "[]", p)) for kind, p in diffs)
    for (kind, p), n in sorted(kinds.items()):
        print(f"summary.json {kind:8s} {n:5d}  {p}")
    numbers = [p for kind, p in diffs if kind in ("number", "length") and not p.startswith("/config")]
    print(f"summary.json: {len(numbers)} numbers differ outside config")
    return [f"summary.json number differs: {p}" for p in numbers[:20]]


def main() -> None:
    before, after = Path(sys.argv[1]), Path(sys.argv[2])
    problems = compare_scores(before, after) + compare_summaries(before, after)
    for p in problems:
        print("DIFFERS:", p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
