"""Reading task states from the result database, without SQLAlchemy.

A fully cached ``vitstudy run`` spends a quarter of its time importing SQLAlchemy, so its cache
check reads a plain SQLite file directly (``sqlite_task_states``), and answers only when nothing
about it is unusual: for any other URL, a file that is not there, a schema that is not this
code's, or any error, it answers None and the caller goes through ``runner.db`` (which then
raises what it raises). ``runner.db.task_states`` reads with the same statements
(``read_task_states``) through SQLAlchemy's connection, on every backend; ``runner.db``
re-exports the names defined here.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple
from urllib.parse import quote

#: The schema this code reads and writes; Alembic revision ``f"{SCHEMA_VERSION:04d}"``.
SCHEMA_VERSION = 3
DEFAULT_URL = "sqlite:///results.db"


def revision_id(version: int) -> str:
    """The Alembic revision of a schema version: ``1 -> "0001"``."""
    return f"{version:04d}"


def database_url(url: str | None = None) -> str:
    """The URL to use: explicit, else ``VITSTUDY_DB``, else ``sqlite:///results.db``.

    A bare ``postgresql://`` or ``postgres://`` URL means the psycopg (3) driver.
    """
    url = url or os.environ.get("VITSTUDY_DB") or DEFAULT_URL
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare):]
    return url


class TaskState(NamedTuple):
    """A task's row as the planner needs it (a tuple: a plan makes one per task)."""

    key: str
    status: str
    artifacts: tuple[tuple[str, str, int], ...]  # (role, path, bytes)


#: ``(select_sql, column, keys)``: the rows of ``select_sql`` whose ``column`` is one of
#: ``keys``, or all its rows for None.
SelectKeys = Callable[[str, str, "list[str] | None"], Iterable[tuple]]

#: Fewest keys for which the tables may be read whole (it takes a count of the tasks first).
_SCAN_FROM = 1_000


def read_task_states(select: SelectKeys, count_tasks: Callable[[], int],
                     keys: Iterable[str] | None, max_keys: int) -> dict[str, TaskState]:
    """Status and artifact list of the given tasks (all tasks when ``keys`` is None), one query
    per table: the keys go in ``IN`` lists of up to ``max_keys``, or, when they are half the
    tasks or more (a study rerun in its own database), both tables are read whole, which costs
    less than looking each key up (a row of a scan costs SQLite a third of a look-up)."""
    keys = None if keys is None else list(keys)
    wanted = None
    if keys is not None and len(keys) >= _SCAN_FROM and 2 * len(keys) >= count_tasks():
        keys, wanted = None, set(keys)
    status: dict[str, str] = {}
    arts: dict[str, list[tuple[str, str, int]]] = {}
    found = arts.get
    for chunk in _chunks(keys, max_keys):
        for row in select("SELECT task_key, role, path, bytes FROM artifacts", "task_key",
                          chunk):  # (role, path, bytes) by task (other tasks' unused)
            listed = found(row[0])
            if listed is None:
                arts[row[0]] = [row[1:]]
            else:
                listed.append(row[1:])
        status.update(select("SELECT key, status FROM tasks", "key", chunk))
    if wanted is not None:  # both tables were read whole: the tasks asked for
        for k in status.keys() - wanted:
            del status[k]
    return {k: TaskState(k, s, tuple(found(k, ()))) for k, s in status.items()}


#: How ``read_task_states`` counts the tasks.
COUNT_TASKS = "SELECT count(*) FROM tasks"


def in_list(select_sql: str, column: str, n_keys: int, mark: str) -> str:
    """``select_sql`` restricted to ``column IN (mark, mark, ...)``, one mark per key."""
    return f"{select_sql} WHERE {column} IN ({', '.join([mark] * n_keys)})"


def max_bound_keys(dialect: str) -> int:
    """How many keys one ``IN`` list may bind on a database: SQLite's limit on bound parameters
    (32,766 since 3.32, 999 before), PostgreSQL's 65,535; 1,000 elsewhere."""
    if dialect == "sqlite":
        return 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999
    return 65_535 if dialect == "postgresql" else 1_000


def _chunks(keys: list[str] | None, size: int) -> Iterator[list[str] | None]:
    """``keys`` in lists of at most ``size``; one None for all keys."""
    if keys is None:
        yield None
        return
    for i in range(0, len(keys), size):
        yield keys[i : i + size]


#: A URL read directly: ``sqlite:///`` and a path of plain characters. Anything else (escapes,
#: a query, a ``file:`` URI, another backend) is SQLAlchemy's to parse.
_PLAIN_SQLITE = re.compile(r"sqlite:///([A-Za-z0-9_./~+ -]+)")


def sqlite_task_states(db_option: str | None, keys: list[str]) -> dict[str, TaskState] | None:
    """``runner.db.task_states`` of the database ``db_option`` names (as ``--db`` does), read
    directly when it is a plain SQLite file holding this code's schema, opened read-only as
    ``runner.db`` opens it; None for anything else, and for any error."""
    found = _PLAIN_SQLITE.fullmatch(database_url(db_option))
    if found is None or not os.path.isfile(found[1]):
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(found[1]))}?mode=ro", uri=True,
                               timeout=60, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        conn.execute("BEGIN")  # one snapshot for both tables
        if not _current_schema(conn):
            return None
        return read_task_states(lambda sql, column, chunk: _rows(conn, sql, column, chunk),
                                lambda: conn.execute(COUNT_TASKS).fetchone()[0], keys,
                                max_bound_keys("sqlite"))
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _current_schema(conn: sqlite3.Connection) -> bool:
    """Whether Alembic's table records this code's schema revision (else ``runner.db`` says
    what the schema is)."""
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master "
                                               "WHERE type = 'table'")}
    if "alembic_version" not in tables:
        return False
    found = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return found is not None and found[0] == revision_id(SCHEMA_VERSION)


def _rows(conn: sqlite3.Connection, select_sql: str, column: str,
          keys: list[str] | None) -> Iterable[tuple]:
    """The rows of ``select_sql`` whose ``column`` is one of ``keys`` (all rows for None)."""
    if keys is None:
        return conn.execute(select_sql)
    return conn.execute(in_list(select_sql, column, len(keys), "?"), keys)
