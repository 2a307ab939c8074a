"""Adversarial cases for the artifact store: ``gc`` in folders and with databases it must not
touch, without a terminal, next to a live run; ``verify`` on missing, corrupted and absent
files. Each case builds a real SQLite database and store in its folder (no training)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from runner import db
from runner.store import Store
from tests.adversarial.harness import Case, check_case
from tests.helpers import TINY_STUDY

#: What ``correct`` holds in the done task each case starts from.
CORRECT = b"correct arrays of the task" * 40


def _url(folder: Path, name: str = "results.db") -> str:
    return f"sqlite:///{folder / name}"


def results(folder: Path, *, marker_for: tuple[str, ...] = ("results.db",)) -> Store:
    """``results.db`` with one done task and its ``correct`` file in ``artifacts/``, whose
    marker names the databases ``marker_for`` (file names in ``folder``)."""
    engine = db.connect(_url(folder))
    run_id = db.start_run(engine, study="s", command="test", provenance={})
    row = {"key": "k" * 64, "study": "s", "kind": "lowpass", "kind_version": 1, "model": "m",
           "model_id": "timm:m", "dataset": "d", "dataset_id": "d", "params": "{}",
           "key_parts": "{}", "upstream": "[]", "seed": 0}
    assert db.claim_task(engine, row, run_id)
    store = Store(folder / "artifacts")
    path, sha, size = store.put_bytes(CORRECT, ".npz")
    db.finish_task(engine, row["key"], metric_rows=[], device="cpu", info={},
                   artifact_rows=[{"role": "correct", "path": path, "sha256": sha, "bytes": size}])
    db.end_run(engine, run_id, "done")
    for name in marker_for:
        store.claim_for(db.database_label(_url(folder, name)))
    engine.dispose()
    return store


def orphan(folder: Path) -> str:
    """A store file no row names (what gc may remove)."""
    return Store(folder / "artifacts").put_bytes(b"orphan", ".bin")[0]


def done_task(folder: Path) -> None:
    results(folder)


def another_database(folder: Path) -> None:
    """A second real vitstudy database beside the one the store was made for."""
    results(folder)
    orphan(folder)
    shutil.copy(folder / "results.db", folder / "other.db")


def with_orphan(folder: Path) -> None:
    results(folder)
    orphan(folder)


def pending_for(alive: bool, *, any_path: bool = False):
    """A setup: an unreferenced store file recorded as pending by a run that is alive (this
    process, not ended) or dead (ended); ``any_path``: the run recorded every path (Ray)."""

    def setup(folder: Path) -> None:
        results(folder)
        engine = db.connect(_url(folder))
        run_id = db.start_run(engine, study="s", command="test", provenance={})
        path = orphan(folder)
        db.record_pending(engine, run_id, "p" * 64, db.ANY_PATH if any_path else path)
        if not alive:
            with db.write(engine) as conn:
                conn.execute(db.runs.update().values(ended_at=1.0, host=socket.gethostname()))
        engine.dispose()

    return setup


def corrupt(folder: Path) -> None:
    """``results`` with its ``correct`` file overwritten by same-size garbage."""
    store = results(folder)
    path = next((store.root).glob("??/*.npz"))
    path.write_bytes(bytes(reversed(CORRECT)))


def missing(folder: Path) -> None:
    store = results(folder)
    next((store.root).glob("??/*.npz")).unlink()


def old_store(folder: Path) -> None:
    """A store made before markers (store-layout files only) beside a real database."""
    results(folder)
    (folder / "artifacts" / ".vitstudy-store").unlink()
    orphan(folder)


def old_schema(folder: Path) -> None:
    """A store marked for ``results.db``, which a vitstudy of schema version 2 made."""
    from runner.migrations import run_migrations

    results(folder)
    (folder / "results.db").unlink()
    with create_engine(_url(folder)).begin() as conn:
        run_migrations(conn, "0002")


def study_folder(folder: Path) -> None:
    """The folder a user works in: a study file, notes and a database."""
    results(folder)
    (folder / "notes.md").write_text("what I found\n")


def shared(folder: Path) -> None:
    results(folder, marker_for=("results.db", "other.db"))
    orphan(folder)


def foreign_in_store(folder: Path) -> None:
    results(folder)
    (folder / "artifacts" / "README.txt").write_text("my notes, kept in the store folder\n")


def marker_text(text: str):
    """A setup: the store's marker replaced by ``text`` (hand-edited, or from a newer vitstudy)."""

    def setup(folder: Path) -> None:
        with_orphan(folder)
        (folder / "artifacts" / ".vitstudy-store").write_text(text)

    return setup


def garbage_db(folder: Path) -> None:
    results(folder)
    (folder / "results.db").unlink()
    (folder / "results.db").write_text("this is not a database\n" * 50)


def empty_db(folder: Path) -> None:
    results(folder)
    (folder / "results.db").unlink()
    (folder / "results.db").write_bytes(b"")


ORPHAN_FILE = r"artifacts/[0-9a-f]{2}/[0-9a-f]{64}\.bin"

CASES = [
    Case("gc-in-a-study-folder", ["--artifacts", ".", "gc", "--yes"], setup=study_folder,
         message=[r"error: \. is not an artifact store", r"\.vitstudy-store is missing"]),
    Case("gc-old-store-is-never-adopted", ["gc", "--yes"], setup=old_store,
         message=[r"artifacts is not an artifact store"]),
    Case("gc-typo-db-creates-nothing", ["--db", "sqlite:///typo.db", "gc", "--yes"],
         setup=with_orphan, message=[r"no database at sqlite:///typo\.db", r"never create"]),
    Case("gc-db-of-another-store", ["--db", "sqlite:///other.db", "gc", "--yes"],
         setup=another_database,
         message=[r"belongs to sqlite:///.*results\.db, not sqlite:///.*other\.db"]),
    Case("gc-store-shared-by-two-databases", ["gc", "--yes"], setup=shared,
         message=[r"shared by 2 databases"]),
    Case("gc-without-a-terminal-or-yes", ["gc"], setup=with_orphan,
         message=[r"would remove 1 file\(s\)", r"not a terminal.*--yes"]),
    Case("gc-dry-run-removes-nothing", ["gc", "--dry-run"], exit=0, setup=with_orphan,
         message=[r"would remove 1 file\(s\).*kept 1"]),
    Case("gc-yes-removes-only-the-orphan", ["gc", "--yes"], exit=0, setup=with_orphan,
         message=[r"removed 1 file\(s\).*kept 1"], writes=[ORPHAN_FILE]),
    Case("gc-keeps-a-file-pending-for-a-live-run", ["gc", "--yes"], exit=0,
         setup=pending_for(alive=True), message=[r"nothing to remove: 0 file\(s\).*kept 2"]),
    Case("gc-removes-a-file-pending-for-a-dead-run", ["gc", "--yes"], exit=0,
         setup=pending_for(alive=False), message=[r"removed 1 file"], writes=[ORPHAN_FILE]),
    Case("gc-removes-nothing-while-a-ray-run-lives", ["gc", "--yes"], exit=0,
         setup=pending_for(alive=True, any_path=True),
         message=[r"nothing to remove: 0 file\(s\).*kept 2"]),
    Case("gc-leaves-foreign-files-in-a-store", ["gc", "--yes"], exit=0,
         setup=foreign_in_store, message=[r"nothing to remove: 0 file\(s\).*kept 2"]),
    Case("gc-garbage-marker", ["gc", "--yes"], setup=marker_text("{not json"),
         message=[r"artifacts is not an artifact store \(\.vitstudy-store is missing or "
                  r"unreadable\)"]),
    Case("gc-marker-of-a-newer-format", ["gc", "--yes"],
         setup=marker_text('{"format": 2, "databases": []}'),
         message=[r"has format 2, not 1: a newer vitstudy made this store"]),
    Case("gc-missing-store-folder", ["--artifacts", "nowhere", "gc", "--yes"],
         setup=done_task, message=[r"nowhere: no such artifact store"]),
    Case("gc-store-is-a-file", ["--artifacts", "results.db", "gc", "--yes"],
         setup=done_task, message=[r"results\.db: no such artifact store"]),
    Case("gc-garbage-database", ["gc", "--yes"], setup=garbage_db,
         message=[r"error: sqlite:///results\.db: .*(not a database|file is not)"]),
    Case("gc-empty-database-file", ["gc", "--yes"], setup=empty_db,
         message=[r"error: .*(no vitstudy tables|no database at)", r"sqlite:///results\.db"]),
    Case("gc-not-a-url", ["--db", "notaurl", "gc", "--yes"], setup=with_orphan,
         message=[r"error: .*notaurl"]),
    Case("gc-older-schema", ["gc", "--yes"], setup=old_schema,
         message=[r"schema version 2 is older.*db upgrade"]),
    Case("verify-missing-database", ["verify"],
         message=[r"no database at sqlite:///results\.db", r"never create"]),
    Case("verify-typo-db", ["--db", "sqlite:///typo.db", "verify"], setup=with_orphan,
         message=[r"no database at sqlite:///typo\.db"]),
    Case("verify-intact-store", ["verify"], exit=0, setup=done_task,
         message=[r"checked 1 file\(s\) of 1 done task\(s\): 0 damaged"]),
    Case("verify-corrupted-file", ["verify"], exit=1, setup=corrupt,
         message=[r"lowpass / m / kkkkkkkkkk: corrupted correct \([0-9a-f]{2}/",
                  r"1 damaged in 1 task", r"verify --mark-stale"]),
    Case("verify-missing-file", ["verify"], exit=1, setup=missing,
         message=[r"missing correct", r"1 damaged in 1 task"]),
    Case("verify-mark-stale", ["verify", "--mark-stale"], exit=1, setup=corrupt,
         message=[r"marked 1 task\(s\) stale"], writes=[r"^results\.db$"]),
    Case("run-refuses-a-folder-that-is-not-a-store", ["--artifacts", ".", "run", "{study}"],
         study=TINY_STUDY, files={"notes.md": "what I found\n"},
         message=[r"error: \. is not an artifact store: it holds .*(notes\.md|study\.yaml)"]),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(case: Case, tmp_path: Path) -> None:
    check_case(case, tmp_path)


def test_mark_stale_reruns_the_task_and_plan_says_why(tmp_path: Path) -> None:
    """After ``verify --mark-stale`` the task is ``stale`` with the reason, its dependants too."""
    corrupt(tmp_path)
    engine = db.connect(_url(tmp_path))
    with db.write(engine) as conn:  # a dependant of the damaged task
        conn.execute(text("INSERT INTO tasks (key, kind, kind_version, status, attempts, "
                          "upstream) VALUES (:k, 'fgbg', 1, 'done', 1, :u)"),
                     {"k": "d" * 64, "u": f'["{"k" * 64}"]'})
    check_case(Case("mark", ["verify", "--mark-stale"], exit=1, writes=[r"^results\.db$"],
                    message=[r"marked 2 task\(s\) stale"]), tmp_path)
    _, rows = db.query(engine, "SELECT key, status, error FROM tasks ORDER BY key")
    assert [(k[0], s) for k, s, _ in rows] == [("d", "stale"), ("k", "stale")]
    assert "upstream task kkkkkkkkkk is stale" in rows[0][2]
    assert rows[1][2].startswith("stale: artifact correct (") and "corrupted" in rows[1][2]


@pytest.mark.parametrize(("answer", "exit_code", "removed"), [("n\n", 1, False), ("y\n", 0, True)])
def test_on_a_terminal_gc_asks_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     answer: str, exit_code: int, removed: bool) -> None:
    monkeypatch.setattr("runner.cli._on_a_terminal", lambda: True)
    writes = [ORPHAN_FILE] if removed else []
    out = check_case(Case("ask", ["gc"], exit=exit_code, setup=with_orphan, input=answer,
                          writes=writes, message=[r"remove 1 file\(s\) \(0\.0 MB\) from "
                                                  r"artifacts\? \[y/N\]"]), tmp_path)
    assert ("removed 1 file(s)" in out) == removed
    assert len(list((tmp_path / "artifacts").glob("??/*.bin"))) == (0 if removed else 1)
