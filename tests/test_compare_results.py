"""bench/compare_results.py: tasks matched by what they measure, values compared exactly."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from runner import db

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "compare_results.py"


def _results(path: Path, key: str, values: list[float], sha: str = "a" * 64) -> Path:
    """A real result database holding one done lowpass task with these top-1 values."""
    db.connect(f"sqlite:///{path}", create=True).dispose()
    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO tasks (key, study, kind, kind_version, model, dataset, params, "
                    "seed, status, attempts) VALUES (?, 's', 'lowpass', 1, 'vit', 'val', "
                    "'{\"radii\": [2.0, 8.0]}', 0, 'done', 1)", (key,))
        for x, value in zip((2.0, 8.0), values, strict=True):
            con.execute("INSERT INTO metrics (task_key, name, value, variant, x) "
                        "VALUES (?, 'top1', ?, 'lowpass', ?)", (key, value, x))
        con.execute("INSERT INTO artifacts (task_key, role, path, sha256, bytes) "
                    "VALUES (?, 'correct', 'ab/cd.npz', ?, 10)", (key, sha))
    return path


def _compare(a: Path, b: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True,
                          text=True, timeout=60)


def test_same_values_under_new_keys_are_identical(tmp_path: Path) -> None:
    before = _results(tmp_path / "a.db", "k1", [40.0, 75.5])
    after = _results(tmp_path / "b.db", "k2", [40.0, 75.5], sha="b" * 64)
    out = _compare(before, after)
    assert out.returncode == 0, out.stdout
    assert "different values 0" in out.stdout
    assert "('lowpass', 'correct')" in out.stdout  # the artifact's bytes changed, and it says so


def test_one_changed_value_is_reported(tmp_path: Path) -> None:
    before = _results(tmp_path / "a.db", "k1", [40.0, 75.5])
    after = _results(tmp_path / "b.db", "k1", [40.0, 75.50000001])
    out = _compare(before, after)
    assert out.returncode == 1
    assert "different values 1" in out.stdout and "75.5 -> 75.50000001" in out.stdout


def test_a_missing_database_is_an_error(tmp_path: Path) -> None:
    out = _compare(tmp_path / "none.db", tmp_path / "none.db")
    assert out.returncode == 2 and "no such database file" in out.stderr
