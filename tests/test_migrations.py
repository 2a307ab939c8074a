"""Schema versions with Alembic: the migrations build exactly ``runner/db.py``'s schema, an older
database is refused until ``upgrade`` and then keeps its rows, a newer one is never touched.
Each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from sqlalchemy import create_engine, inspect, text

from runner import db, migrations
from runner.migrations import head_revision, run_migrations
from tests.postgres import db_url, postgres_server, postgres_url  # noqa: F401 (fixtures)


def _previous_version_database(url: str) -> None:
    """What a vitstudy of schema version 1 left behind: its tables (revision 0001, made before
    vitstudy used Alembic, so no ``alembic_version``), one run, one done task with rows."""
    engine = create_engine(url)
    with engine.begin() as conn:
        run_migrations(conn, "0001")
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("INSERT INTO runs (study, host, status) VALUES ('s', 'h', 'done')"))
        conn.execute(text(
            "INSERT INTO tasks (key, study, kind, kind_version, model, dataset, params, status, "
            "attempts, run_id) SELECT 'k1', 's', 'fgbg', 1, 'm', 'd', '{}', 'done', 1, id "
            "FROM runs"))
        conn.execute(text("INSERT INTO metrics (task_key, name, value, variant) VALUES "
                          "('k1', 'top5', 90.0, 'fg'), ('k1', 'top5', 30.0, 'bg')"))
        conn.execute(text("INSERT INTO artifacts (task_key, role, path, sha256, bytes) VALUES "
                          "('k1', 'correct', 'ab/x.npz', 'ff', 3)"))
    engine.dispose()


def _row(key: str) -> dict:
    return {"key": key, "study": "s", "kind": "lowpass", "kind_version": 1, "model": "m",
            "model_id": "timm:x", "dataset": "d", "dataset_id": "id", "params": "{}",
            "key_parts": "{}", "upstream": "[]", "seed": 0}


def test_head_revision_is_the_schema_version_of_the_code() -> None:
    assert head_revision() == db.revision_id(db.SCHEMA_VERSION)


def test_migrations_from_an_empty_database_build_the_schema_of_the_code(
        db_url: str) -> None:  # noqa: F811
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = db.connect(db_url, create=False)
    assert migrations.upgrade(engine) == (None, db.SCHEMA_VERSION)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
        assert "results" in inspect(conn).get_view_names()
    # and a database that ``connect`` creates directly is at the same version
    fresh = db.connect(db_url)
    with db.read(fresh) as conn:
        assert db.schema_version(conn) == db.SCHEMA_VERSION


def test_previous_version_is_refused_then_upgraded_keeping_its_rows(
        db_url: str) -> None:  # noqa: F811
    _previous_version_database(db_url)
    with pytest.raises(db.SchemaError, match=r"version 1 is older .* `vitstudy db upgrade`"):
        db.connect(db_url)
    with create_engine(db_url).connect() as conn:  # refusing changed nothing
        assert "host" not in {c["name"] for c in inspect(conn).get_columns("tasks")}

    assert migrations.upgrade(db.connect(db_url, create=False)) == (1, db.SCHEMA_VERSION)
    engine = db.connect(db_url)
    _, rows = db.query(engine, "SELECT model, variant, value FROM results ORDER BY value")
    assert rows == [("m", "bg", 30.0), ("m", "fg", 90.0)]
    assert db.artifact_paths(engine, "k1") == {"correct": "ab/x.npz"}
    head = db.revision_id(db.SCHEMA_VERSION)
    assert db.query(engine, "SELECT version_num FROM alembic_version")[1] == [(head,)]
    assert db.query(engine, "SELECT value FROM meta WHERE name = 'schema_version'")[1] == [
        (str(db.SCHEMA_VERSION),)]
    # the new column works: a task run now records its host
    run_id = db.start_run(engine, study="s", command="t", provenance={})
    assert db.claim_task(engine, _row("k2"), run_id)
    db.finish_task(engine, "k2", metric_rows=[], artifact_rows=[], info={}, device="cpu",
                   host="node-7")
    assert db.query(engine, "SELECT key, host FROM tasks ORDER BY key")[1] == [
        ("k1", None), ("k2", "node-7")]
    # schema 3's table works: a pending artifact is dropped when its task's rows commit
    db.record_pending(engine, run_id, "k2", "cd/y.npz")
    db.finish_task(engine, "k2", metric_rows=[], artifact_rows=[], info={}, device="cpu")
    assert db.query(engine, "SELECT COUNT(*) FROM pending_artifacts")[1] == [(0,)]
    # upgrading a current database is a no-op
    assert migrations.upgrade(engine) == (db.SCHEMA_VERSION, db.SCHEMA_VERSION)


def test_newer_revision_is_refused_and_left_untouched(db_url: str) -> None:  # noqa: F811
    migrations.upgrade(db.connect(db_url, create=False))  # current schema, not checked by connect
    newer = db.revision_id(db.SCHEMA_VERSION + 1)
    with create_engine(db_url).begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": newer})
    for attempt in (lambda: db.connect(db_url),
                    lambda: migrations.upgrade(db.connect(db_url, create=False))):
        with pytest.raises(db.SchemaError, match="newer than this vitstudy knows"):
            attempt()
    with create_engine(db_url).connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == newer


def _connect_in_process(url: str, start, out: mp.Queue) -> None:
    start.wait(30)
    try:
        db.connect(url)
        out.put("ok")
    except Exception as e:  # noqa: BLE001 - reported to the test
        out.put(f"{type(e).__name__}: {e}")


def test_runners_starting_together_on_an_empty_database_create_it_once(
        db_url: str) -> None:  # noqa: F811
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    start = ctx.Event()
    procs = [ctx.Process(target=_connect_in_process, args=(db_url, start, out))
             for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == ["ok"] * 4
    engine = db.connect(db_url)
    assert db.query(engine, "SELECT count(*) FROM alembic_version")[1] == [(1,)]
