"""Helpers of the fault tests (tests/execute/test_faults.py, tests/adversarial/test_faults.py):
a tiny study run once and copied per test, a real process that holds tasks in the database
as a runner does (then is killed), and reading task rows back."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tests.helpers import write_study

#: A process that claims the given task rows for a run of its own, then keeps the run's
#: heartbeat fresh until it is killed: a runner busy with those tasks, without the work.
HOLDER = """
import json, sys, time
from runner import db
engine = db.connect(sys.argv[1])
run_id = db.start_run(engine, study="holder", command="holder", provenance={})
for row in json.loads(sys.argv[2]):
    assert db.claim_task(engine, row, run_id), row["key"]
print(run_id, flush=True)
while True:
    db.heartbeat(engine, run_id)
    time.sleep(0.2)
"""


def db_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'results.db'}"


def cli_args(folder: Path) -> list[str]:
    """The global options naming ``folder``'s database and store."""
    return ["--db", db_url(folder), "--artifacts", str(folder / "artifacts")]


def run_study(folder: Path, study_text: str, *extra: str) -> Any:
    """``vitstudy run`` in-process on ``study_text`` written in ``folder``; click's result."""
    from runner.cli import main

    study = write_study(folder, study_text)
    return CliRunner().invoke(main, [*cli_args(folder), "run", str(study), *extra])


def copy_world(source: Path, dest: Path) -> Path:
    """Copy a folder's database (consistently, through SQLite's backup) and artifact store."""
    dest.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(source / "results.db")
    dst = sqlite3.connect(dest / "results.db")
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    shutil.copytree(source / "artifacts", dest / "artifacts", dirs_exist_ok=True)
    return dest


def sql(folder: Path, query: str, *params: Any) -> list[tuple]:
    """Run ``query`` on ``folder``'s database (committed at once; never creates one)."""
    con = sqlite3.connect(f"file:{folder / 'results.db'}?mode=rw", uri=True, timeout=60)
    try:
        with con:
            return con.execute(query, params).fetchall()
    finally:
        con.close()


def tasks_by_kind(folder: Path) -> dict[str, tuple]:
    """kind -> (status, attempts, run_id, seconds) of each task (one task per kind)."""
    rows = sql(folder, "SELECT kind, status, attempts, run_id, seconds FROM tasks")
    return {kind: tuple(rest) for kind, *rest in rows}


def task_rows(study_file: Path, kinds: set[str]) -> list[dict[str, Any]]:
    """The database rows (as a runner claims them) of the study's tasks of ``kinds``."""
    from runner.plan import make_plan
    from runner.spec import load_study

    plan = make_plan(load_study(study_file))
    return [t.row(plan.study.name) for t in plan.tasks if t.kind in kinds]


def start_holder(folder: Path, rows: list[dict[str, Any]]) -> tuple[subprocess.Popen, int]:
    """Start a ``HOLDER`` process on ``folder``'s database; returns it and its run id once it
    holds ``rows``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, db_url(folder), json.dumps(rows)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.strip().isdigit(), proc.communicate(timeout=30)
    return proc, int(line)


def wait_for(condition: Any, timeout: float, what: str, every: float = 0.05) -> float:
    """Poll ``condition()`` until true; returns the time it became true."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return time.time()
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def dead_pid() -> int:
    """The process id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def console_seconds(output: str) -> dict[str, float]:
    """short key -> seconds, from the console's ``done <kind> / <model> / <key> (12.3s)``."""
    found = re.findall(r"done \S+ / \S+ / (\w+) \(([\d.]+)s\)", output)
    return {key: float(seconds) for key, seconds in found}


def assert_seconds_as_the_console(output: str, folder: Path) -> None:
    """Each task the console showed done is stored with the time the console showed."""
    shown = console_seconds(output)
    assert shown, output
    stored = {k[:10]: s for k, s in sql(folder, "SELECT key, seconds FROM tasks")}
    for key, seconds in shown.items():
        assert abs(stored[key] - seconds) <= 0.051, (key, stored[key], seconds)
    for started, ended, seconds in sql(folder, "SELECT started_at, ended_at, seconds FROM "
                                       "tasks WHERE status = 'done'"):
        assert abs((ended - started) - seconds) < 1e-3


def environment(folder: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``vitstudy`` subprocess working on ``folder``."""
    return dict(os.environ, VITSTUDY_DB=db_url(folder),
                VITSTUDY_ARTIFACTS=str(folder / "artifacts"), PYTHONUNBUFFERED="1", **extra)
