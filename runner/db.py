"""The result database: schema, engine set-up, and the queries other modules use.

SQLite by default (WAL, busy timeout, ``BEGIN IMMEDIATE`` for read-then-write transactions),
PostgreSQL for several machines (tasks are claimed under row locks), any SQLAlchemy URL
otherwise. Tables are tidy so that users can query them directly: ``runs``, ``tasks``,
``metrics``, ``artifacts`` and the ``results`` view. The schema is versioned with Alembic
(``runner/migrations``): a runner refuses a database whose schema is newer than it knows, and
upgrades an older one only through ``upgrade`` (``vitstudy db upgrade``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Connection

from runner.dbread import (  # noqa: F401 - re-exported: runner.db is where callers find them
    COUNT_TASKS,
    DEFAULT_URL,
    SCHEMA_VERSION,
    TaskState,
    database_url,
    in_list,
    max_bound_keys,
    read_task_states,
    revision_id,
)
from runner.errors import (
    DatabaseMissing,
    DatabaseUnusable,
    EmptyDatabase,
    SchemaError,
    SettingError,
)

#: A run whose heartbeat is older than this is presumed dead (other hosts only; on this host
#: the process id is checked directly). ``VITSTUDY_LEASE_S`` overrides it (``lease_seconds``).
HEARTBEAT_LEASE_S = 180.0
LEASE_ENV = "VITSTUDY_LEASE_S"

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("study", String(200)),
    Column("command", Text),
    Column("host", String(200)),
    Column("pid", Integer),
    Column("git_sha", String(64)),
    Column("git_dirty", Integer),
    Column("versions", Text),  # JSON: package -> version
    Column("device", String(100)),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("heartbeat_at", Float),
    Column("status", String(20)),  # running / done / failed / interrupted
)

tasks = Table(
    "tasks",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("study", String(200)),
    Column("kind", String(50), nullable=False),
    Column("kind_version", Integer, nullable=False),
    Column("model", String(200)),  # the model's name in the study file
    Column("model_id", Text),
    Column("dataset", String(200)),
    Column("dataset_id", Text),
    Column("params", Text),  # JSON, validated, defaults filled in
    Column("key_parts", Text),  # JSON: exactly what was hashed into the key
    Column("upstream", Text),  # JSON list of upstream task keys
    Column("seed", Integer),
    Column("status", String(20), nullable=False),  # pending / running / done / failed / stale /
    # interrupted (handed back by a run that stopped)
    Column("error", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("device", String(100)),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("seconds", Float),
    Column("info", Text),  # JSON: counters (skipped images...), provenance of the run
    Column("host", String(200)),  # the machine that ran the task (schema 2)
    Index("ix_tasks_status", "status"),
)

metrics = Table(
    "metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_key", String(64), ForeignKey("tasks.key", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("value", Float),
    Column("variant", String(100)),
    Column("layer", Integer),
    Column("feature", Integer),
    Column("x", Float),
    Column("position", Integer),
    Index("ix_metrics_task", "task_key"),
    Index("ix_metrics_name", "name"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_key", String(64), ForeignKey("tasks.key", ondelete="CASCADE"), nullable=False),
    Column("role", String(100), nullable=False),
    Column("path", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("layer", Integer),
    Column("feature", Integer),
    Column("rank", Integer),
    Index("ix_artifacts_task", "task_key"),
)

#: Files a live run has put (or is putting) into the artifact store for a task whose rows are
#: not committed yet: ``gc`` keeps them (schema 3). A row is committed before its file is
#: renamed into the store and removed in the transaction that commits the task's artifacts.
pending_artifacts = Table(
    "pending_artifacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False),
    Column("task_key", String(64), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("created_at", Float),
    Index("ix_pending_artifacts_path", "path"),
    Index("ix_pending_artifacts_task", "task_key"),
)

RESULTS_VIEW = """
CREATE VIEW IF NOT EXISTS results AS
SELECT t.study AS study, t.kind AS kind, t.model AS model, t.dataset AS dataset,
       t.params AS params, t.key AS task_key, m.name AS name, m.variant AS variant,
       m.layer AS layer, m.feature AS feature, m.x AS x, m.position AS position,
       m.value AS value
FROM metrics m JOIN tasks t ON t.key = m.task_key
WHERE t.status = 'done'
"""


#: Alembic's bookkeeping table, written directly when a new database is created at the head
#: revision (so that creating a database does not need Alembic).
alembic_version = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), primary_key=True),
)


#: How long a SQLite connection waits for another's lock before "database is locked".
BUSY_TIMEOUT_S = 60


def _enable_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode = WAL``, waiting for other connections as the busy timeout does:
    SQLite answers a journal-mode change that meets another connection's lock (runners opening
    a new database together) with "database is locked" at once, without its busy handler."""
    import sqlite3

    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_setup(engine: Engine, *, read_only: bool = False) -> None:
    """WAL, busy timeout, foreign keys; transactions begin explicitly (IMMEDIATE on demand).
    ``read_only``: no journal-mode change, ``query_only`` and an authorizer refusing writes."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event emit BEGIN
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        if read_only:
            cur.execute("PRAGMA query_only = ON")
            dbapi_conn.set_authorizer(_read_only_authorizer)
        else:
            _enable_wal(cur)
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


#: PRAGMAs a read-only connection may run: they only read (with no argument, or a table name).
_READ_PRAGMAS = frozenset({
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check", "database_list",
    "collation_list", "function_list", "pragma_list", "compile_options", "data_version",
    "page_count", "page_size", "freelist_count", "encoding", "user_version", "schema_version",
    "application_id", "journal_mode", "busy_timeout", "query_only", "foreign_keys",
})
_SETTING_PRAGMAS = frozenset({"user_version", "schema_version", "application_id",
                              "journal_mode", "busy_timeout", "query_only", "foreign_keys"})


def _read_only_authorizer(action: int, arg1: str | None, arg2: str | None, _db: str | None,
                          _trigger: str | None) -> int:
    """sqlite3 authorizer of read-only connections: reading is allowed; any write, ``ATTACH``,
    ``DETACH`` and every PRAGMA that sets something are denied ("not authorized")."""
    import sqlite3

    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        if name not in _READ_PRAGMAS or (name in _SETTING_PRAGMAS and arg2 is not None):
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK
    allowed = (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
               sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_RECURSIVE, sqlite3.SQLITE_SAVEPOINT)
    return sqlite3.SQLITE_OK if action in allowed else sqlite3.SQLITE_DENY


_engines: dict[tuple[int, str, bool], Engine] = {}
_checked: set[tuple[int, str, bool]] = set()


def connect(url: str | None = None, *, create: bool = True, read_only: bool = False) -> Engine:
    """An engine for ``url``; with ``create``, the schema is created or checked (once per
    process and URL). Raises ``SchemaError`` for a schema newer or older than this code's.

    ``read_only``: the database is opened so that nothing can change it (SQLite: a read-only
    URI, ``query_only`` and an authorizer; PostgreSQL: read-only transactions), never created
    (``DatabaseMissing`` for a SQLite file that does not exist), and its schema is checked."""
    url = database_url(url)
    if read_only:
        create = False
        require_existing(url)
    # a forked child must not share its parent's connections; a relative SQLite path is
    # made absolute so that one engine never serves two files as the working folder changes
    target = absolute_url(url)
    cache_key = (os.getpid(), target, read_only)
    engine = _engines.get(cache_key)
    if engine is None:
        engine = _make_engine(target, read_only=read_only)
        _engines[cache_key] = engine
    if (create or read_only) and cache_key not in _checked:
        if read_only:
            check_schema(engine, url)
        else:
            init_schema(engine)
        _checked.add(cache_key)
    return engine


#: The password of a URL SQLAlchemy cannot parse, as well as it can be found: ``user:PW@``.
_PASSWORD = re.compile(r"(://[^/@]*?:)[^/@]*@")


def parse_url(url: str) -> URL:
    """``url`` parsed by SQLAlchemy; ``DatabaseUnusable`` where its parser raises a bare
    ``ValueError`` (a port that is not a number): the user's URL is at fault, not the code."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url)
    except ValueError as e:
        raise DatabaseUnusable(f"not a database URL ({e}). Give a SQLAlchemy URL such as "
                               "sqlite:///results.db or postgresql://user@host/name.") from None


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL (None for another backend or an in-memory database)."""
    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def absolute_url(url: str) -> str:
    """``url`` with a SQLite file's path made absolute (symlinks resolved): the same database
    whatever the working folder is later."""
    path = sqlite_file(url)
    if path is None or path.startswith("file:"):
        return url
    return parse_url(url).set(database=os.path.realpath(path)).render_as_string(
        hide_password=False)


def database_label(url: str) -> str:
    """How an artifact store's marker names a database: its absolute URL, password hidden."""
    return hide_password(absolute_url(url))


def require_existing(url: str) -> None:
    """Raise ``DatabaseMissing`` when ``url`` names a SQLite file that does not exist."""
    path = sqlite_file(url)
    if path is not None and not os.path.isfile(path):
        raise DatabaseMissing(f"no database at {hide_password(url)}")


def hide_password(url: str) -> str:
    """``url`` as it may be shown: its password replaced by ``***`` (in an unparsable URL,
    whatever sits where a password would)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _PASSWORD.sub(r"\1***@", url)


def _make_engine(url: str, *, read_only: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(_read_only_sqlite_url(url) if read_only else url,
                               connect_args={"timeout": BUSY_TIMEOUT_S})
        _sqlite_setup(engine, read_only=read_only)
        return engine
    # PostgreSQL: every transaction of the session is read-only unless it says otherwise
    args = {"connect_args": {"options": "-c default_transaction_read_only=on"}} if (
        read_only and url.startswith("postgresql")) else {}
    try:
        return create_engine(url, pool_pre_ping=True, **args)
    except ModuleNotFoundError as e:
        raise DatabaseUnusable(
            f"no driver for {url.split('://', 1)[0]} ({e.name} is not installed); for "
            "PostgreSQL: pip install 'vitstudy[postgres]' and use postgresql+psycopg://..."
        ) from None


def _read_only_sqlite_url(url: str) -> str:
    """The SQLite URL opening the same file through a read-only URI (``mode=ro``)."""
    from urllib.parse import quote

    path = sqlite_file(url)
    if path is None:  # in memory: nothing to protect
        return url
    driver = parse_url(url).drivername
    return f"{driver}:///file:{quote(os.path.abspath(path))}?mode=ro&uri=true"


def check_schema(engine: Engine, url: str | None = None) -> None:
    """Raise ``SchemaError`` unless the database holds this code's schema (reads only);
    ``EmptyDatabase`` (naming ``url``, default the engine's) when it holds no vitstudy tables."""
    with read(engine) as conn:
        version = schema_version(conn)
    if version is None:
        raise EmptyDatabase(f"{hide_password(url or engine.url.render_as_string())} holds no "
                            "vitstudy tables (an empty database, or one vitstudy did not make)")
    check_schema_version(version)


def init_schema(engine: Engine) -> None:
    """Create the schema in an empty database; refuse one whose schema is not this code's."""
    with write(engine) as conn:
        lock_schema(conn)
        version = schema_version(conn)
        if version is None:
            metadata.create_all(conn)
            _create_results_view(conn)
            alembic_version.create(conn, checkfirst=True)
            stamp(conn, SCHEMA_VERSION)
        else:
            check_schema_version(version)


def check_schema_version(version: int) -> None:
    """Raise ``SchemaError`` unless ``version`` is the schema this code reads and writes."""
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"the database's schema version {version} is newer than this vitstudy knows "
            f"({SCHEMA_VERSION}); upgrade vitstudy"
        )
    if version < SCHEMA_VERSION:
        raise SchemaError(
            f"the database's schema version {version} is older than this vitstudy's "
            f"({SCHEMA_VERSION}); back the database up, then run `vitstudy db upgrade` "
            "(with the same --db) to upgrade it"
        )


def schema_version(conn: Connection) -> int | None:
    """The database's schema version: Alembic's revision, else (a database made before
    Alembic) the ``meta`` table's, else None for an empty database."""
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" in tables:
        found = conn.execute(select(alembic_version.c.version_num)).scalar()
        if found is not None:
            return int(found)
    if "meta" in tables:
        found = conn.execute(select(meta.c.value).where(meta.c.name == "schema_version"))
        value = found.scalar()
        if value is not None:
            return int(value)
    return None


def stamp(conn: Connection, version: int) -> None:
    """Record ``version`` in Alembic's table and in ``meta`` (what users and old code read)."""
    conn.execute(delete(alembic_version))
    conn.execute(insert(alembic_version).values(version_num=revision_id(version)))
    set_meta_schema_version(conn, version)


def set_meta_schema_version(conn: Connection, version: int) -> None:
    """Write ``meta.schema_version`` (each migration calls this with its own version)."""
    conn.execute(delete(meta).where(meta.c.name == "schema_version"))
    conn.execute(insert(meta).values(name="schema_version", value=str(version)))


def _create_results_view(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.execute(text(RESULTS_VIEW))
    else:
        conn.execute(text(RESULTS_VIEW.replace("CREATE VIEW IF NOT EXISTS",
                                               "CREATE OR REPLACE VIEW")))


#: Key of the PostgreSQL advisory lock that serializes schema creation and upgrades.
_SCHEMA_LOCK = 0x76697473  # "vits"


def lock_schema(conn: Connection) -> None:
    """Serialize schema work between runners (SQLite: ``BEGIN IMMEDIATE`` already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})


@contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A read-then-write transaction: ``BEGIN IMMEDIATE`` on SQLite, committed on exit."""
    with engine.connect() as conn:
        conn = conn.execution_options(immediate=True)
        with conn.begin():
            yield conn


@contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction."""
    with engine.connect() as conn, conn.begin():
        yield conn


# ---------------------------------------------------------------------------------- runs


def start_run(engine: Engine, *, study: str, command: str, provenance: dict[str, Any]) -> int:
    """Record a new invocation and return its id."""
    now = time.time()
    with write(engine) as conn:
        res = conn.execute(
            insert(runs).values(
                study=study,
                command=command,
                host=socket.gethostname(),
                pid=os.getpid(),
                git_sha=provenance.get("git_sha"),
                git_dirty=int(bool(provenance.get("git_dirty"))),
                versions=json.dumps(provenance.get("versions", {}), sort_keys=True),
                device=provenance.get("device"),
                started_at=now,
                heartbeat_at=now,
                status="running",
            )
        )
        return int(res.inserted_primary_key[0])


def heartbeat(engine: Engine, run_id: int) -> None:
    with write(engine) as conn:
        conn.execute(update(runs).where(runs.c.id == run_id).values(heartbeat_at=time.time()))


def end_run(engine: Engine, run_id: int, status: str) -> None:
    with write(engine) as conn:
        conn.execute(
            update(runs).where(runs.c.id == run_id).values(ended_at=time.time(), status=status)
        )
        conn.execute(delete(pending_artifacts).where(pending_artifacts.c.run_id == run_id))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_alive(conn: Connection, run_id: int | None) -> bool:
    """Whether the run that holds a task is still going (pid on this host, heartbeat elsewhere)."""
    if run_id is None:
        return False
    row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
    if row is None or row["ended_at"] is not None:
        return False
    if row["host"] == socket.gethostname() and row["pid"] is not None:
        return _pid_alive(int(row["pid"]))
    return (time.time() - (row["heartbeat_at"] or 0)) < lease_seconds()


def lease_seconds() -> float:
    """How long a run's heartbeat stays valid: ``VITSTUDY_LEASE_S``, else 180 s. A runner beats
    every sixth of it. Raises ``SettingError`` (naming the variable) for a value that is not a
    positive, finite number of seconds."""
    raw = os.environ.get(LEASE_ENV, "").strip()
    if not raw:
        return HEARTBEAT_LEASE_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise SettingError(f"{LEASE_ENV}={raw!r}: expected a positive number of seconds (the "
                         "heartbeat lease after which a silent runner is presumed dead)")
    return value


# --------------------------------------------------------------------------------- tasks


def task_states(engine: Engine, keys: Iterable[str] | None = None) -> dict[str, TaskState]:
    """Status and artifact list of the given tasks (all tasks when ``keys`` is None), one query
    per table on any backend (``runner.dbread.read_task_states``)."""
    with read(engine) as conn:
        return read_task_states(
            lambda sql, column, chunk: _select_keys(conn, sql, column, chunk),
            lambda: conn.exec_driver_sql(COUNT_TASKS).scalar_one(), keys,
            max_bound_keys(conn.dialect.name))


#: The mark of a positional parameter, by DB-API paramstyle (``named`` ones are SQLAlchemy's).
_POSITIONAL = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _select_keys(conn: Connection, select_sql: str, column: str,
                 keys: list[str] | None) -> list[Any]:
    """The rows of ``select_sql`` whose ``column`` is one of ``keys`` (all rows for None), the
    list written as the driver's own parameters: SQLAlchemy's expanding ``IN`` would cost as
    much as the query itself at 10,000 keys."""
    if keys is None:
        return conn.exec_driver_sql(select_sql).all()
    mark = _POSITIONAL.get(conn.dialect.paramstyle)
    if mark is None:
        return conn.execute(text(f"{select_sql} WHERE {column} IN :keys").bindparams(
            bindparam("keys", expanding=True)), {"keys": keys}).all()
    return conn.exec_driver_sql(in_list(select_sql, column, len(keys), mark), tuple(keys)).all()


def done_tasks_like(engine: Engine, kind: str, model: str | None) -> list[dict[str, Any]]:
    """Done tasks of one kind and model: the candidates ``vitstudy why`` compares against."""
    q = select(tasks.c.key, tasks.c.key_parts).where(tasks.c.kind == kind, tasks.c.status == "done")
    if model is not None:
        q = q.where(tasks.c.model == model)
    with read(engine) as conn:
        return [
            {"key": k, "parts": json.loads(p)} for k, p in conn.execute(q) if p is not None
        ]


def claim_task(
    engine: Engine, row: dict[str, Any], run_id: int, *, redo_done: bool = False
) -> bool:
    """Atomically take a task for this run. False if done or held by a live run.

    ``row`` holds the task's descriptive columns (key, study, kind, ...). A task that is
    ``running`` under a dead run (killed) or ``failed`` is taken over; ``done`` is taken only
    with ``redo_done`` (its artifacts were found missing).
    """
    now = time.time()
    fields = dict(row, status="running", run_id=run_id, started_at=now, ended_at=None,
                  error=None, seconds=None)
    with write(engine) as conn:
        if conn.dialect.name == "postgresql":
            return _claim_postgresql(conn, fields, run_id, redo_done)
        cur = conn.execute(
            select(tasks.c.status, tasks.c.run_id, tasks.c.attempts).where(
                tasks.c.key == row["key"]
            )
        ).first()
        if cur is None:
            conn.execute(insert(tasks).values(**fields, attempts=1))
            return True
        return _take_over(conn, fields, cur, run_id, redo_done)


def _claim_postgresql(conn: Connection, fields: dict[str, Any], run_id: int,
                      redo_done: bool) -> bool:
    """Claim under a row lock: insert if new, else lock the row (``FOR UPDATE SKIP LOCKED``);
    a row another runner is claiming or finishing right now is theirs."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    created = conn.execute(
        pg_insert(tasks).values(**fields, attempts=1)
        .on_conflict_do_nothing(index_elements=[tasks.c.key]).returning(tasks.c.key)
    ).first()
    if created is not None:
        return True
    cur = conn.execute(
        select(tasks.c.status, tasks.c.run_id, tasks.c.attempts)
        .where(tasks.c.key == fields["key"]).with_for_update(skip_locked=True)
    ).first()
    if cur is None:
        return False
    return _take_over(conn, fields, cur, run_id, redo_done)


def _take_over(conn: Connection, fields: dict[str, Any], cur: Any, run_id: int,
               redo_done: bool) -> bool:
    """Decide on an existing task row (read in this transaction) and take it if allowed."""
    status, holder, attempts = cur
    if status == "done" and not redo_done:
        return False
    if status == "running" and holder != run_id and run_alive(conn, holder):
        return False
    conn.execute(
        update(tasks).where(tasks.c.key == fields["key"]).values(**fields, attempts=attempts + 1)
    )
    return True


def finish_task(
    engine: Engine,
    key: str,
    *,
    metric_rows: list[dict[str, Any]],
    artifact_rows: list[dict[str, Any]],
    info: dict[str, Any],
    device: str,
    host: str | None = None,
    seconds: float | None = None,
) -> None:
    """Commit a task's metrics and artifacts and mark it done, in one transaction.

    ``host``: the machine that ran it (default: this one). ``seconds``: the task's own time as
    measured where it ran (default: since it was claimed)."""
    now = time.time()
    with write(engine) as conn:
        conn.execute(delete(metrics).where(metrics.c.task_key == key))
        conn.execute(delete(artifacts).where(artifacts.c.task_key == key))
        conn.execute(delete(pending_artifacts).where(pending_artifacts.c.task_key == key))
        if metric_rows:
            conn.execute(insert(metrics), [dict(r, task_key=key) for r in metric_rows])
        if artifact_rows:
            conn.execute(insert(artifacts), [dict(r, task_key=key) for r in artifact_rows])
        conn.execute(
            update(tasks)
            .where(tasks.c.key == key)
            .values(status="done", **_timing(conn, key, now, seconds),
                    info=json.dumps(info, sort_keys=True, default=str), device=device, error=None,
                    host=host or socket.gethostname())
        )


def fail_task(engine: Engine, key: str, error: str, info: dict[str, Any] | None = None,
              host: str | None = None, seconds: float | None = None) -> None:
    """Mark a task failed with its error; its partial rows are dropped. ``host``, ``seconds``:
    as in ``finish_task``."""
    now = time.time()
    with write(engine) as conn:
        conn.execute(delete(metrics).where(metrics.c.task_key == key))
        conn.execute(delete(artifacts).where(artifacts.c.task_key == key))
        conn.execute(delete(pending_artifacts).where(pending_artifacts.c.task_key == key))
        conn.execute(
            update(tasks)
            .where(tasks.c.key == key)
            .values(status="failed", error=error, **_timing(conn, key, now, seconds),
                    info=json.dumps(info or {}, sort_keys=True, default=str),
                    host=host or socket.gethostname())
        )


def _timing(conn: Connection, key: str, now: float, seconds: float | None) -> dict[str, float]:
    """A finished task's started_at, ended_at and seconds: ``seconds`` as measured where it ran
    (started_at is then ``now - seconds``), else the time since it was claimed."""
    if seconds is None:
        started = conn.execute(select(tasks.c.started_at).where(tasks.c.key == key)).scalar()
        seconds = now - (started or now)
    return {"started_at": now - seconds, "ended_at": now, "seconds": seconds}


def task_status(engine: Engine, key: str) -> str | None:
    with read(engine) as conn:
        return conn.execute(select(tasks.c.status).where(tasks.c.key == key)).scalar()


def task_holder(engine: Engine, key: str) -> tuple[str | None, bool]:
    """A task's status (None: no row) and whether a live run holds it (``running`` under a run
    whose process is alive, or whose heartbeat is within the lease)."""
    with read(engine) as conn:
        row = conn.execute(select(tasks.c.status, tasks.c.run_id)
                           .where(tasks.c.key == key)).first()
        if row is None:
            return None, False
        return row[0], row[0] == "running" and run_alive(conn, row[1])


def release_tasks(engine: Engine, run_id: int, error: str = "interrupted") -> int:
    """Hand back every task still ``running`` under ``run_id`` (the run stops): they become
    ``interrupted`` with ``error``, and any runner takes them. Returns how many."""
    now = time.time()
    with write(engine) as conn:
        res = conn.execute(
            update(tasks).where(tasks.c.run_id == run_id, tasks.c.status == "running")
            .values(status="interrupted", error=error, ended_at=now)
        )
        return int(res.rowcount or 0)


def artifact_paths(engine: Engine, key: str) -> dict[str, str]:
    """role -> relative path of a task's artifacts (the first one of each role)."""
    with read(engine) as conn:
        rows = conn.execute(
            select(artifacts.c.role, artifacts.c.path).where(artifacts.c.task_key == key)
            .order_by(artifacts.c.id)
        )
        out: dict[str, str] = {}
        for role, path in rows:
            out.setdefault(role, path)
        return out


# ------------------------------------------------------------------- artifact bookkeeping


#: A pending path that stands for every file: recorded by a run whose writers cannot record
#: each file (Ray workers never open the database); gc removes nothing while it is alive.
ANY_PATH = "*"


def record_pending(engine: Engine, run_id: int, task_key: str, path: str) -> None:
    """Say that run ``run_id`` is putting ``path`` into the store for ``task_key``: committed
    before the file is renamed in, so ``gc`` keeps it until the task's rows name it."""
    with write(engine) as conn:
        conn.execute(insert(pending_artifacts).values(
            path=path, task_key=task_key, run_id=run_id, created_at=time.time()))


@contextmanager
def gc_lock(engine: Engine, *, exclusive: bool = True) -> Iterator[Callable[[list[str]], set[str]]]:
    """A write transaction in which no run can record a pending artifact; yields a function
    giving which of some store paths are kept (named by an artifact row, or pending for a live
    run). ``gc`` deletes the others before leaving the block. ``exclusive=False``: a plain read
    (for a dry run, which deletes nothing)."""
    with (write if exclusive else read)(engine) as conn:
        if exclusive and conn.dialect.name == "postgresql":  # blocks record_pending until commit
            conn.execute(text("LOCK TABLE pending_artifacts IN SHARE ROW EXCLUSIVE MODE"))
        alive: dict[int | None, bool] = {}

        def kept(paths: list[str]) -> set[str]:
            keep = {p for (p,) in conn.execute(
                select(artifacts.c.path).where(artifacts.c.path.in_(paths)))}
            rows = conn.execute(select(pending_artifacts.c.path, pending_artifacts.c.run_id)
                                .where(pending_artifacts.c.path.in_([*paths, ANY_PATH])))
            for path, run_id in rows:
                if run_id not in alive:
                    alive[run_id] = run_alive(conn, run_id)
                if alive[run_id] and path == ANY_PATH:
                    return set(paths)
                if alive[run_id]:
                    keep.add(path)
            return keep

        yield kept
        dead = [run_id for run_id, live in alive.items() if not live]
        if exclusive and dead:  # a killed run's records: nothing will ever commit them
            conn.execute(delete(pending_artifacts).where(pending_artifacts.c.run_id.in_(dead)))


@dataclass(frozen=True)
class StoredArtifact:
    """One artifact row of a done task, with what ``verify`` reports it under."""

    task_key: str
    kind: str
    model: str | None
    role: str
    path: str
    sha256: str
    bytes: int


def stored_artifacts(engine: Engine) -> list[StoredArtifact]:
    """Every artifact row of a done task, by task (what ``vitstudy verify`` checks)."""
    a, t = artifacts.c, tasks.c
    q = (select(a.task_key, t.kind, t.model, a.role, a.path, a.sha256, a.bytes)
         .join_from(artifacts, tasks, a.task_key == t.key).where(t.status == "done")
         .order_by(t.kind, t.model, a.task_key, a.id))
    with read(engine) as conn:
        return [StoredArtifact(*row) for row in conn.execute(q)]


def mark_stale(engine: Engine, key: str, reason: str) -> list[str]:
    """Mark a done task ``stale`` (its artifact is missing or corrupted) and, transitively,
    every done task downstream of it: they rerun. Returns the keys marked."""
    marked: list[str] = []
    with write(engine) as conn:
        frontier, why = [key], {key: reason}
        while frontier:
            k = frontier.pop()
            res = conn.execute(update(tasks).where(tasks.c.key == k, tasks.c.status == "done")
                               .values(status="stale", error=why[k]))
            if res.rowcount:
                marked.append(k)
            for (down,) in conn.execute(select(tasks.c.key).where(
                    tasks.c.upstream.like(f'%"{k}"%'), tasks.c.status == "done")):
                why.setdefault(down, f"stale: upstream task {k[:10]} is stale ({reason})")
                frontier.append(down)
    return marked


def query(
    engine: Engine, sql: str, params: dict[str, Any] | None = None, *, commit: bool = False
) -> tuple[list[str], list[tuple]]:
    """Run a user's SQL; returns column names and rows. Rolled back unless ``commit`` (so even
    on an engine that could write, a query that reads changes nothing)."""
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            if conn.dialect.driver == "psycopg" and not commit and not params:
                cols, rows = _one_postgresql_statement(conn, sql)
            else:
                res = conn.execute(text(sql), params or {})
                cols, rows = (list(res.keys()), [tuple(r) for r in res]) if (
                    res.returns_rows) else ([], [])
        except BaseException:
            trans.rollback()
            raise
        (trans.commit if commit else trans.rollback)()
        return cols, rows


def _one_postgresql_statement(conn: Connection, sql: str) -> tuple[list[str], list[tuple]]:
    """Run ``sql`` as a prepared statement (PostgreSQL's extended protocol), so that it is one
    statement: ``...; COMMIT; SET ... READ WRITE; DELETE ...`` cannot leave a read-only
    transaction. Driver errors come back as SQLAlchemy's ``DatabaseError``."""
    from sqlalchemy.exc import DatabaseError

    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql, prepare=True)
        if cur.description is None:
            return [], []
        return [d.name for d in cur.description], [tuple(r) for r in cur.fetchall()]
    except conn.dialect.dbapi.Error as e:
        raise DatabaseError(sql, None, e) from None
    finally:
        cur.close()
