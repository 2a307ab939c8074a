"""What the executors do so that no result is lost or silently wrong: artifacts are recorded as
pending before they enter the store (``gc`` keeps them), and artifacts are checked against
their recorded sha256 before a task loads them (a corrupted one makes its task rerun).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner import db
from runner.plan import Plan, Task, TaskStatus
from runner.store import Store, sha_of_path


class CorruptedArtifact(RuntimeError):
    """A stored artifact no longer hashes to the sha256 it was recorded with."""


class RecordingSink:
    """The artifact sink of one task in a run: each file is recorded as pending (committed)
    before the store looks for it or renames it in, so ``gc`` cannot remove it meanwhile."""

    def __init__(self, engine: Any, store: Store, run_id: int, task_key: str) -> None:
        self.engine, self.store, self.run_id, self.task_key = engine, store, run_id, task_key

    def put_bytes(self, data: bytes, suffix: str) -> tuple[str, str, int]:
        """Record the file's store path as pending for this task, then store ``data``."""
        return self.store.put_bytes(data, suffix, on_path=self._record)

    def _record(self, relpath: str) -> None:
        db.record_pending(self.engine, self.run_id, self.task_key, relpath)


def checked_path(store: Store, relpath: str, what: str) -> Path:
    """The absolute path of a stored artifact after checking its content against the sha256
    its name records; raises ``CorruptedArtifact`` (naming ``what``) when it does not match."""
    sha = sha_of_path(relpath)
    if sha is not None and not store.verify(relpath, sha):
        raise CorruptedArtifact(f"{what}: artifact {relpath} is missing or corrupted "
                                "(sha256 mismatch); the next run marks its task stale and "
                                "redoes it")
    return store.path(relpath).resolve()


def corrupted_upstream(plan: Plan, engine: Any, store: Store,
                       status: dict[str, TaskStatus]) -> list[str]:
    """Check the artifacts of every done upstream task that a task to run will load; mark the
    producer of a corrupted one stale, with its dependants. Returns the keys marked."""
    to_run = [t for t in plan.tasks if not status[t.key].cached]
    upstream = sorted({up for t in to_run for up in t.upstream
                       if status.get(up, TaskStatus(False, "new")).cached})
    marked: list[str] = []
    for key in upstream:
        bad = _first_corrupted(engine, store, key)
        if bad is not None:
            marked += db.mark_stale(engine, key, f"stale: artifact {bad} corrupted")
    return marked


def _first_corrupted(engine: Any, store: Store, key: str) -> str | None:
    """``role (path)`` of the first artifact of task ``key`` that fails its check, or None."""
    for role, relpath in db.artifact_paths(engine, key).items():
        try:
            checked_path(store, relpath, role)
        except CorruptedArtifact:
            return f"{role} ({relpath})"
    return None


def task_sink(engine: Any, store: Store, run_id: int) -> Callable[[Task], RecordingSink]:
    """``GroupRunner``'s ``sink_for``: each task's artifacts recorded as pending by this run."""
    return lambda task: RecordingSink(engine, store, run_id, task.key)


@dataclass(frozen=True)
class StoreCheck:
    """What ``vitstudy verify`` found: files checked, done tasks, and the damaged artifacts of
    each task (``missing`` or ``corrupted``)."""

    checked: int
    tasks: int
    damaged: dict[str, list[tuple[db.StoredArtifact, str]]] = field(default_factory=dict)


def check_store(engine: Any, store: Store) -> StoreCheck:
    """Check every artifact of every done task against its recorded size and sha256 (each
    file is read once, however many tasks share it)."""
    rows = db.stored_artifacts(engine)
    seen: dict[tuple[str, str], str | None] = {}
    damaged: dict[str, list[tuple[db.StoredArtifact, str]]] = {}
    for art in rows:
        if (art.path, art.sha256) not in seen:
            seen[art.path, art.sha256] = _problem(store, art)
        problem = seen[art.path, art.sha256]
        if problem is not None:
            damaged.setdefault(art.task_key, []).append((art, problem))
    return StoreCheck(len(seen), len({a.task_key for a in rows}), damaged)


def _problem(store: Store, art: db.StoredArtifact) -> str | None:
    if not store.path(art.path).is_file():
        return "missing"
    if not store.intact(art.path, art.bytes) or not store.verify(art.path, art.sha256):
        return "corrupted"
    return None


def mark_damaged(engine: Any, found: StoreCheck) -> list[str]:
    """Mark each task with a damaged artifact stale (and its dependants): the next run redoes
    them. Returns every key marked."""
    marked: list[str] = []
    for key, damage in found.damaged.items():
        art, problem = damage[0]
        marked += db.mark_stale(engine, key, f"stale: artifact {art.role} ({art.path}) {problem}")
    return marked
