"""The result database: WAL, claiming, one-transaction commits, the results view.

Every test that takes ``engine`` or ``db_url`` runs twice: on SQLite and on PostgreSQL (a
throwaway server, see ``tests/postgres.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from runner import db, dbread
from tests.helpers import run_together
from tests.postgres import db_url, postgres_server, postgres_url  # noqa: F401 (fixtures)


def _row(key: str = "k" * 64) -> dict:
    return {"key": key, "study": "s", "kind": "fgbg", "kind_version": 1, "model": "m",
            "model_id": "timm:x", "dataset": "d", "dataset_id": "id", "params": "{}",
            "key_parts": "{}", "upstream": "[]", "seed": 0}


@pytest.fixture
def engine(db_url: str):  # noqa: F811 (the fixture)
    return db.connect(db_url)


def _run(engine, pid: int | None = None) -> int:
    run_id = db.start_run(engine, study="s", command="test", provenance={"device": "cpu"})
    if pid is not None:
        with db.write(engine) as conn:
            conn.execute(db.runs.update().where(db.runs.c.id == run_id).values(pid=pid))
    return run_id


def test_sqlite_runs_in_wal_mode_with_busy_timeout(tmp_path: Path) -> None:
    engine = db.connect(f"sqlite:///{tmp_path / 'r.db'}")
    with db.read(engine) as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000


def test_claim_is_exclusive_while_the_holder_lives(engine) -> None:
    mine, other = _run(engine), _run(engine)  # both are this (live) process
    assert db.claim_task(engine, _row(), mine)
    assert not db.claim_task(engine, _row(), other)
    assert db.claim_task(engine, _row(), mine)  # the holder may re-claim


def test_task_of_a_dead_run_is_taken_over(engine) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    holder = _run(engine, pid=int(dead))
    assert db.claim_task(engine, _row(), holder)
    taker = _run(engine)
    assert db.claim_task(engine, _row(), taker)
    with db.read(engine) as conn:
        attempts, run_id = conn.execute(
            text("SELECT attempts, run_id FROM tasks")).one()
    assert (attempts, run_id) == (2, taker)


def test_done_task_is_not_claimed_again_unless_redone(engine) -> None:
    run_id = _run(engine)
    assert db.claim_task(engine, _row(), run_id)
    db.finish_task(engine, "k" * 64, metric_rows=[], artifact_rows=[], info={}, device="cpu")
    assert not db.claim_task(engine, _row(), _run(engine))
    assert db.claim_task(engine, _row(), _run(engine), redo_done=True)


def test_finish_writes_metrics_and_artifacts_and_results_view(engine) -> None:
    run_id = _run(engine)
    db.claim_task(engine, _row(), run_id)
    db.finish_task(
        engine, "k" * 64,
        metric_rows=[{"name": "top5", "value": 90.0, "variant": "fg"},
                     {"name": "top5", "value": 30.0, "variant": "bg"}],
        artifact_rows=[{"role": "correct", "path": "ab/x.npz", "sha256": "0" * 64, "bytes": 3}],
        info={"skipped": 1}, device="cpu")
    cols, rows = db.query(engine, "SELECT model, variant, value FROM results "
                          "WHERE kind='fgbg' AND name='top5' ORDER BY value")
    assert cols == ["model", "variant", "value"]
    assert rows == [("m", "bg", 30.0), ("m", "fg", 90.0)]
    assert db.artifact_paths(engine, "k" * 64) == {"correct": "ab/x.npz"}
    assert db.task_status(engine, "k" * 64) == "done"


def test_failed_task_drops_partial_rows_and_keeps_error(engine) -> None:
    run_id = _run(engine)
    db.claim_task(engine, _row(), run_id)
    db.fail_task(engine, "k" * 64, "ValueError: boom")
    cols, rows = db.query(engine, "SELECT status, error FROM tasks")
    assert rows == [("failed", "ValueError: boom")]
    assert db.claim_task(engine, _row(), run_id)  # a failed task is retried


def test_newer_schema_is_refused(db_url: str) -> None:  # noqa: F811
    url = db_url
    raw = create_engine(url)
    db.metadata.create_all(raw)
    with raw.begin() as conn:
        conn.execute(db.meta.insert().values(name="schema_version",
                                             value=str(db.SCHEMA_VERSION + 1)))
    with pytest.raises(RuntimeError, match="newer than this vitstudy knows"):
        db.connect(url)


def _claim_in_process(url: str, key: str, start, out, release) -> None:
    engine = db.connect(url)
    run_id = db.start_run(engine, study="s", command="t", provenance={})
    start.wait(30)
    out.put(db.claim_task(engine, _row(key), run_id))
    release.wait(30)  # stay alive: a live holder's claim must not be taken over


def test_concurrent_claims_from_processes_give_exactly_one_winner(
        db_url: str) -> None:  # noqa: F811
    url = db_url
    db.connect(url)
    wins = run_together(_claim_in_process, (url, "c" * 64), 6, timeout=60)
    assert wins.count(True) == 1


def _states(engine, keys: list[str] | None = None) -> dict[str, tuple]:
    """``task_states`` with each task's artifacts sorted (rows come back in no fixed order)."""
    return {k: (s.status, sorted(s.artifacts)) for k, s in db.task_states(engine, keys).items()}


def test_task_states_gives_the_same_states_whichever_way_it_reads(
        engine, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = _run(engine)
    keys = [f"{i:064x}" for i in range(7)]
    for i, key in enumerate(keys):
        db.claim_task(engine, _row(key), run_id)
        if i % 2:
            db.finish_task(engine, key, metric_rows=[], info={}, device="cpu", artifact_rows=[
                {"role": r, "path": f"{key}.{r}", "sha256": "0" * 64, "bytes": i}
                for r in ("a", "b")])
    asked = [*keys, "f" * 64]  # a key without a row is left out
    whole = _states(engine, asked)
    monkeypatch.setattr(db, "max_bound_keys", lambda dialect: 3)
    assert _states(engine, asked) == whole == _states(engine)
    monkeypatch.setattr(db, "_POSITIONAL", {})  # a driver of named parameters
    assert _states(engine, asked) == whole
    monkeypatch.setattr(dbread, "_SCAN_FROM", 1)  # the tables read whole
    assert _states(engine, asked) == whole
    assert _states(engine, keys[:3]) == {k: whole[k] for k in keys[:3]}
    assert whole == {k: ("done", [("a", f"{k}.a", i), ("b", f"{k}.b", i)]) if i % 2 else
                     ("running", []) for i, k in enumerate(keys)}
    assert db.task_states(engine, []) == {}
