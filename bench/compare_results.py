"""Compare the results of two runs of one study, metric by metric, exactly.

Tasks are matched by what they measure (kind, model, dataset, params, seed), not by key, so a
code change that bumps a kind's version (new keys, same computation) can be checked for
bit-identical numbers. Prints the count of metrics on each side, those only on one side, those
whose values differ (NaN equals NaN), and the artifacts whose bytes differ, by (kind, role).

    python bench/compare_results.py before/results.db after/results.db

Exit status 0 when every metric is on both sides with the same value, else 1.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
from pathlib import Path

_METRICS = """
    SELECT t.kind, t.model, t.dataset, t.params, t.seed, m.name, m.variant, m.layer,
           m.feature, m.x, m.position, m.value
    FROM metrics m JOIN tasks t ON t.key = m.task_key WHERE t.status = 'done'"""
_ARTIFACTS = """
    SELECT t.kind, t.model, t.dataset, t.params, t.seed, a.role, a.layer, a.feature, a.rank,
           a.sha256
    FROM artifacts a JOIN tasks t ON t.key = a.task_key WHERE t.status = 'done'"""


def _rows(path: Path, query: str) -> dict[tuple, object]:
    """Identity (every column but the last) -> last column, read-only."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        return {tuple(row[:-1]): row[-1] for row in con.execute(query)}


def _same(a: object, b: object) -> bool:
    both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return a == b or both_nan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    for path in (args.before, args.after):
        if not path.is_file():
            print(f"error: {path}: no such database file", file=sys.stderr)
            return 2
    before, after = _rows(args.before, _METRICS), _rows(args.after, _METRICS)
    differ = [k for k in before.keys() & after.keys() if not _same(before[k], after[k])]
    print(f"metrics: {len(before)} before, {len(after)} after; only before "
          f"{len(before.keys() - after.keys())}, only after {len(after.keys() - before.keys())}, "
          f"different values {len(differ)}")
    for key in sorted(differ, key=str)[:10]:
        print(f"  {key}: {before[key]!r} -> {after[key]!r}")
    files_before, files_after = _rows(args.before, _ARTIFACTS), _rows(args.after, _ARTIFACTS)
    same = sum(files_before[k] == files_after.get(k) for k in files_before)
    changed = sorted({(k[0], k[5]) for k in files_before if files_before[k] != files_after.get(k)})
    print(f"artifacts: {len(files_before)} before, {len(files_after)} after, {same} "
          f"byte-identical; differing (kind, role): {changed or 'none'}")
    identical = not differ and before.keys() == after.keys()
    print("metrics bit-identical" if identical else "metrics DIFFER")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
