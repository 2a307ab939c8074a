"""The database side of "gc never removes a file a live run may still record", on SQLite and
PostgreSQL: pending records, the lock gc decides under, and marking damaged tasks stale."""

from __future__ import annotations

import threading
import time

from runner import db
from tests.postgres import db_url, postgres_server, postgres_url  # noqa: F401 (fixtures)


def _row(key: str, upstream: str = "[]") -> dict:
    return {"key": key, "study": "s", "kind": "lowpass", "kind_version": 1, "model": "m",
            "model_id": "timm:x", "dataset": "d", "dataset_id": "id", "params": "{}",
            "key_parts": "{}", "upstream": upstream, "seed": 0}


def test_a_pending_file_is_kept_while_its_run_lives_then_named_by_its_row(
        db_url: str) -> None:  # noqa: F811
    engine = db.connect(db_url)
    run_id = db.start_run(engine, study="s", command="t", provenance={})
    assert db.claim_task(engine, _row("a" * 64), run_id)
    db.record_pending(engine, run_id, "a" * 64, "ab/file.npz")
    with db.gc_lock(engine) as kept:
        assert kept(["ab/file.npz", "cd/orphan.bin"]) == {"ab/file.npz"}
    db.finish_task(engine, "a" * 64, metric_rows=[], info={}, device="cpu", artifact_rows=[
        {"role": "correct", "path": "ab/file.npz", "sha256": "ab", "bytes": 1}])
    db.end_run(engine, run_id, "done")  # the run is over: only the artifact row keeps it
    assert db.query(engine, "SELECT COUNT(*) FROM pending_artifacts")[1] == [(0,)]
    with db.gc_lock(engine, exclusive=False) as kept:
        assert kept(["ab/file.npz", "cd/orphan.bin"]) == {"ab/file.npz"}


def test_records_of_a_dead_run_protect_nothing_and_are_dropped(
        db_url: str) -> None:  # noqa: F811
    engine = db.connect(db_url)
    run_id = db.start_run(engine, study="s", command="t", provenance={})
    db.record_pending(engine, run_id, "b" * 64, "ef/left.bin")
    with db.write(engine) as conn:  # killed: ended without end_run's clean-up
        conn.execute(db.runs.update().values(ended_at=time.time()))
    with db.gc_lock(engine) as kept:
        assert kept(["ef/left.bin"]) == set()
    assert db.query(engine, "SELECT COUNT(*) FROM pending_artifacts")[1] == [(0,)]


def test_a_run_recording_any_path_keeps_every_file(db_url: str) -> None:  # noqa: F811
    engine = db.connect(db_url)
    run_id = db.start_run(engine, study="s", command="t", provenance={})
    db.record_pending(engine, run_id, "", db.ANY_PATH)
    with db.gc_lock(engine) as kept:
        assert kept(["a1/x.bin", "b2/y.png"]) == {"a1/x.bin", "b2/y.png"}


def test_recording_waits_while_gc_holds_its_lock(db_url: str) -> None:  # noqa: F811
    """A file cannot be recorded between gc's decision and its deletion."""
    engine = db.connect(db_url)
    run_id = db.start_run(engine, study="s", command="t", provenance={})
    recorded_at: list[float] = []

    def record() -> None:
        db.record_pending(engine, run_id, "c" * 64, "12/new.bin")
        recorded_at.append(time.monotonic())

    with db.gc_lock(engine) as kept:
        assert kept(["12/new.bin"]) == set()
        writer = threading.Thread(target=record)
        writer.start()
        time.sleep(0.5)
        released = time.monotonic()
        assert not recorded_at, "a run recorded a file while gc was deciding"
    writer.join(30)
    assert recorded_at and recorded_at[0] >= released


def test_mark_stale_follows_dependants_and_only_touches_done_tasks(
        db_url: str) -> None:  # noqa: F811
    engine = db.connect(db_url)
    run_id = db.start_run(engine, study="s", command="t", provenance={})
    up, down, other = "u" * 64, "d" * 64, "o" * 64
    for key, upstream in ((up, "[]"), (down, f'["{up}"]'), (other, "[]")):
        assert db.claim_task(engine, _row(key, upstream), run_id)
        db.finish_task(engine, key, metric_rows=[], artifact_rows=[], info={}, device="cpu")
    assert sorted(db.mark_stale(engine, up, "stale: artifact checkpoint corrupted")) == [
        down, up]
    _, rows = db.query(engine, "SELECT key, status, error FROM tasks ORDER BY key")
    status = {k[0]: (s, e) for k, s, e in rows}
    assert status["u"] == ("stale", "stale: artifact checkpoint corrupted")
    assert status["d"][0] == "stale" and "upstream task uuuuuuuuuu is stale" in status["d"][1]
    assert status["o"] == ("done", None)
    assert db.mark_stale(engine, up, "again") == [], "a stale task is not marked twice"
    assert db.claim_task(engine, _row(up), run_id), "a stale task is taken by the next run"
