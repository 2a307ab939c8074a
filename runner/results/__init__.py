"""The result database as tidy pandas DataFrames: one row per metric, task, artifact or run.

Every function takes an SQLAlchemy ``Engine`` or a database URL (opened read-only: it must
exist) and optional filters. Integer dimensions (``layer``, ``feature``, ``position``,
``rank``) are pandas nullable ``Int64``; times are UTC ``datetime64``; ``params`` and ``info``
stay canonical JSON text (use ``expand_params`` to spread params into columns).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, Select, column, select, table

from runner import db

#: Columns of the ``results`` view, in order (the same as ``runner.db.RESULTS_VIEW``).
RESULT_COLUMNS = (
    "study", "kind", "model", "dataset", "params", "task_key", "name", "variant",
    "layer", "feature", "x", "position", "value",
)
_INT_COLUMNS = ("layer", "feature", "position", "rank", "kind_version", "seed", "attempts",
                "run_id", "bytes", "id", "pid")
_FLOAT_COLUMNS = ("x", "value", "seconds")
_TIME_COLUMNS = ("started_at", "ended_at", "heartbeat_at")
_CHUNK = 500  # task keys per IN (...) clause

_results_view = table("results", *(column(c) for c in RESULT_COLUMNS))


def results(
    engine: Engine | str,
    *,
    study: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    model: str | None = None,
    task_keys: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Metrics of done tasks joined to their task (the ``results`` view), one row per metric."""
    view = _results_view.c
    query = select(_results_view).order_by(view.task_key, view.name, view.variant, view.layer,
                                           view.feature, view.x, view.position)
    query = _filter(query, {view.study: study, view.kind: kind, view.name: name,
                            view.model: model})
    return _read(engine, query, view.task_key, task_keys, RESULT_COLUMNS)


def tasks(
    engine: Engine | str,
    *,
    study: str | None = None,
    kind: str | None = None,
    model: str | None = None,
    status: str | None = None,
    task_keys: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Task rows (any status), one per task, with their params, status, error and timing."""
    t = db.tasks.c
    query = select(db.tasks).order_by(t.kind, t.model, t.key)
    query = _filter(query, {t.study: study, t.kind: kind, t.model: model, t.status: status})
    return _read(engine, query, t.key, task_keys, tuple(db.tasks.c.keys()))


def artifacts(
    engine: Engine | str,
    *,
    study: str | None = None,
    kind: str | None = None,
    model: str | None = None,
    role: str | None = None,
    task_keys: Iterable[str] | None = None,
    store_root: str | Path | None = None,
) -> pd.DataFrame:
    """Artifact rows of done tasks with their task's kind/model; ``file`` is the absolute path
    when ``store_root`` is given."""
    a, t = db.artifacts.c, db.tasks.c
    query = (
        select(a.id, a.task_key, t.study, t.kind, t.model, t.dataset, a.role, a.path, a.sha256,
               a.bytes, a.layer, a.feature, a.rank)
        .join_from(db.artifacts, db.tasks, a.task_key == t.key)
        .where(t.status == "done")
        .order_by(a.task_key, a.role, a.layer, a.feature, a.rank, a.id)
    )
    query = _filter(query, {t.study: study, t.kind: kind, t.model: model, a.role: role})
    names = ("id", "task_key", "study", "kind", "model", "dataset", "role", "path", "sha256",
             "bytes", "layer", "feature", "rank")
    frame = _read(engine, query, a.task_key, task_keys, names)
    if store_root is not None:
        root = Path(store_root).resolve()
        frame["file"] = [str(root / p) for p in frame["path"]]
    return frame


def runs(engine: Engine | str, *, study: str | None = None) -> pd.DataFrame:
    """One row per invocation of the runner: command, host, git sha, versions, device, times."""
    r = db.runs.c
    query = _filter(select(db.runs).order_by(r.id), {r.study: study})
    frame = _read(engine, query, None, None, tuple(db.runs.c.keys()))
    frame["git_dirty"] = frame["git_dirty"].astype("boolean")
    return frame


def expand_params(frame: pd.DataFrame, prefix: str = "params.") -> pd.DataFrame:
    """``frame`` with one column per key of its JSON ``params`` column (``params.<key>``)."""
    parsed = [json.loads(p) if isinstance(p, str) and p else {} for p in frame["params"]]
    spread = pd.DataFrame.from_records(parsed, index=frame.index).add_prefix(prefix)
    return pd.concat([frame, spread], axis=1)


# ------------------------------------------------------------------------------ internals


def _engine(engine: Engine | str) -> Engine:
    """An engine as given, or a URL opened read-only (reading never creates a database)."""
    return db.connect(engine, read_only=True) if isinstance(engine, str) else engine


def _filter(query: Select, equal: dict[Any, Any]) -> Select:
    for col, value in equal.items():
        if value is not None:
            query = query.where(col == value)
    return query


def _read(
    engine: Engine | str,
    query: Select,
    key_column: Any,
    task_keys: Iterable[str] | None,
    names: tuple[str, ...],
) -> pd.DataFrame:
    """Run ``query`` (restricted to ``task_keys`` in chunks) into a typed DataFrame."""
    rows: list[tuple] = []
    with db.read(_engine(engine)) as conn:
        for chunk in _key_chunks(task_keys):
            q = query if chunk is None else query.where(key_column.in_(chunk))
            rows.extend(tuple(r) for r in conn.execute(q))
    return _typed(pd.DataFrame.from_records(rows, columns=list(names)))


def _key_chunks(task_keys: Iterable[str] | None) -> Iterator[list[str] | None]:
    if task_keys is None:
        yield None
        return
    keys = list(dict.fromkeys(task_keys))
    for i in range(0, len(keys), _CHUNK):
        yield keys[i : i + _CHUNK]


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    for name in frame.columns:
        if name in _INT_COLUMNS:
            frame[name] = pd.to_numeric(frame[name]).astype("Int64")
        elif name in _FLOAT_COLUMNS:
            frame[name] = pd.to_numeric(frame[name]).astype("float64")
        elif name in _TIME_COLUMNS:
            frame[name] = pd.to_datetime(pd.to_numeric(frame[name]), unit="s", utc=True)
    return frame
