"""The adversarial suite's harness: one ``Case`` per thing a user can do wrong, run through the
real CLI in a fresh folder, asserting the exit status, the message, and that nothing was
written (no database rows, no store files, no report files) unless the case says what may be.

Each ``test_*.py`` beside this file holds a table of cases for one class (study files, data,
faults, concurrency, names, queries) and runs them with ``check_case``.
"""

from __future__ import annotations

import hashlib
import os
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import CliRunner

#: Folders a case may write to without that counting as "written": the synthetic world's
#: cache and Python's byte code.
IGNORED_PARTS = ("__pycache__", ".vitstudy-cache")


@dataclass
class Case:
    """One adversarial input: the command line (after ``vitstudy``), the study file and other
    files it needs, and what must come out.

    ``args`` may name ``{study}`` (the written study file) and ``{dir}`` (the case's folder).
    ``message`` holds regular expressions that must all match the output (stdout + stderr).
    ``writes`` holds path patterns (relative to the folder) that the case may create or change;
    every other file must stay exactly as it was.
    """

    id: str
    args: list[str]
    exit: int = 2
    message: list[str] = field(default_factory=list)
    study: str | None = None
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    writes: list[str] = field(default_factory=list)
    input: str | None = None

    def __str__(self) -> str:
        return self.id


def snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``folder`` (what "nothing written" compares)."""
    out: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if any(part in rel for part in IGNORED_PARTS) or not path.is_file():
            continue
        if path.name.endswith(("-wal", "-shm")):  # SQLite's side files: compared via the db
            continue
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def db_rows(folder: Path) -> dict[str, int]:
    """Row counts per table of every SQLite file under ``folder`` (read through sqlite3)."""
    import sqlite3

    counts: dict[str, int] = {}
    for path in folder.rglob("*.db"):
        uri = f"file:{path}?mode=ro"
        try:
            con = sqlite3.connect(uri, uri=True)
            names = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for name in names:
                counts[f"{path.name}:{name}"] = con.execute(
                    f'SELECT COUNT(*) FROM "{name}"').fetchone()[0]
            con.close()
        except sqlite3.DatabaseError:
            counts[f"{path.name}:<unreadable>"] = -1
    return counts


def prepare(case: Case, folder: Path) -> Path | None:
    """Write the case's study file and other files; run its ``setup``; return the study path."""
    study = None
    if case.study is not None:
        study = folder / "study.yaml"
        study.write_text(textwrap.dedent(case.study))
    for rel, content in case.files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content))
    if case.setup is not None:
        case.setup(folder)
    return study


def invoke(case: Case, folder: Path, study: Path | None):
    """Run the CLI in-process in ``folder`` with a clean environment; returns click's result."""
    from runner.cli import main

    args = [a.format(study=study, dir=folder) for a in case.args]
    env = {"VITSTUDY_DB": None, "VITSTUDY_ARTIFACTS": None, **case.env}
    old = os.getcwd()
    os.chdir(folder)
    try:
        return CliRunner().invoke(main, args, env=env, input=case.input,
                                  catch_exceptions=True)
    finally:
        os.chdir(old)


def check_case(case: Case, folder: Path) -> str:
    """Run ``case`` in ``folder`` and assert everything it promises; returns the output."""
    study = prepare(case, folder)
    before_files, before_rows = snapshot(folder), db_rows(folder)
    result = invoke(case, folder, study)
    output = result.output  # click >= 8.2: stdout and stderr interleaved
    exc = result.exception
    assert not (exc is not None and not isinstance(exc, SystemExit)), (
        f"{case.id}: raised {type(exc).__name__}: {exc}\n{output}")
    assert "Traceback" not in output, f"{case.id}: traceback in output\n{output}"
    assert result.exit_code == case.exit, (
        f"{case.id}: exit {result.exit_code}, expected {case.exit}\n{output}")
    for pattern in case.message:
        assert re.search(pattern, output, re.S | re.I), (
            f"{case.id}: output does not match {pattern!r}\n{output}")
    if case.exit == 2:
        lines = [ln for ln in output.strip().splitlines() if ln.strip()]
        assert lines and lines[0].startswith("error:"), (
            f"{case.id}: not one error paragraph\n{output}")
    after_files, after_rows = snapshot(folder), db_rows(folder)
    allowed = [re.compile(p) for p in case.writes]
    changed = {p for p in set(before_files) | set(after_files)
               if before_files.get(p) != after_files.get(p)}
    changed = {p for p in changed if not any(a.search(p) for a in allowed)}
    assert not changed, f"{case.id}: wrote {sorted(changed)}\n{output}"
    if not case.writes:
        assert after_rows == before_rows, f"{case.id}: database rows changed\n{output}"
    return output
