"""The store's marker (what makes a folder a store, for which database), its adoption of stores
made before markers, and what gc and put_bytes do to files the store did not write or that
changed under it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from runner.errors import StoreError
from runner.store import MARKER, Store, keep_only, sha_of_path

DB = "sqlite:////data/results.db"


def test_a_new_folder_gets_a_marker_naming_its_database(tmp_path: Path) -> None:
    store = Store(tmp_path / "artifacts")
    store.claim_for(None)  # only checks: writes nothing
    assert not store.root.exists()
    store.claim_for(DB)
    marker = json.loads((store.root / MARKER).read_text())
    assert marker["format"] == 1 and marker["databases"] == [DB] and marker["created"]
    store.claim_for(DB)  # again: unchanged
    assert json.loads((store.root / MARKER).read_text()) == marker
    store.check_owner(DB)


def test_a_store_made_before_markers_is_adopted_by_a_run(tmp_path: Path) -> None:
    old = Store(tmp_path)
    rel, _, _ = old.put_bytes(b"from an older vitstudy", ".npz")
    (tmp_path / rel).with_name(".tmp-left-by-a-kill.npz").write_bytes(b"x")
    with pytest.raises(StoreError, match="is missing"):
        old.check_owner(DB)  # gc never adopts
    old.claim_for(DB)
    old.check_owner(DB)


def test_a_folder_with_other_files_is_refused_and_left_unmarked(tmp_path: Path) -> None:
    (tmp_path / "study.yaml").write_text("name: mine\n")
    store = Store(tmp_path)
    with pytest.raises(StoreError, match=r"not an artifact store: it holds study\.yaml"):
        store.claim_for(DB)
    assert not (tmp_path / MARKER).exists()
    with pytest.raises(StoreError, match="is missing"):
        store.gc(keep_only([]))
    assert (tmp_path / "study.yaml").exists()


def test_gc_is_refused_for_another_or_a_second_database(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.claim_for(DB)
    with pytest.raises(StoreError, match="belongs to sqlite:////data/results.db, not"):
        store.check_owner("sqlite:////elsewhere/typo.db")
    store.claim_for("postgresql+psycopg://me:***@host/db")
    with pytest.raises(StoreError, match="shared by 2 databases"):
        store.check_owner(DB)
    with pytest.raises(StoreError, match="no such artifact store folder"):
        Store(tmp_path / "nowhere").check_owner(DB)


def test_gc_removes_only_store_files_and_never_the_marker(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.claim_for(DB)
    keep, _, _ = store.put_bytes(b"keep", ".bin")
    drop, _, _ = store.put_bytes(b"drop", ".png")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "ab").mkdir(exist_ok=True)
    (tmp_path / "ab" / "not-a-hash.bin").write_bytes(b"mine too")
    report = store.gc(keep_only([keep]))
    assert (report.removed, report.bytes_freed, report.kept) == (1, 4, 3)
    assert not store.path(drop).exists() and store.path(keep).exists()
    assert (tmp_path / MARKER).exists() and (tmp_path / "notes.txt").exists()
    assert (tmp_path / "ab" / "not-a-hash.bin").exists()


def test_gc_decides_each_batch_inside_its_guard(tmp_path: Path) -> None:
    """The guard is entered once per batch, and deletions happen while it is held."""
    store = Store(tmp_path)
    store.claim_for(DB)
    paths = [store.put_bytes(bytes([i]), ".bin")[0] for i in range(5)]
    held: list[bool] = []
    seen: list[int] = []

    class Guard:
        def __enter__(self):
            held.append(True)
            return lambda batch: seen.append(len(batch)) or set()

        def __exit__(self, *exc):
            held[-1] = all(not store.path(p).exists() for p in paths[: sum(seen)])
            return False

    assert store.gc(Guard, batch=2).removed == 5
    assert seen == [2, 2, 1] and held == [True, True, True]


def test_put_bytes_records_before_and_rewrites_a_corrupted_same_size_file(
        tmp_path: Path) -> None:
    store = Store(tmp_path)
    recorded: list[tuple[str, bool]] = []
    data = b"checkpoint bytes" * 10

    def on_path(rel: str) -> None:
        recorded.append((rel, store.path(rel).exists()))

    rel, sha, size = store.put_bytes(data, ".pt", on_path=on_path)
    assert recorded == [(rel, False)], "recorded before the file entered the store"
    assert sha_of_path(rel) == sha == hashlib.sha256(data).hexdigest()
    store.path(rel).write_bytes(bytes(reversed(data)))  # same size, other content
    assert store.put_bytes(data, ".pt", on_path=on_path) == (rel, sha, size)
    assert store.path(rel).read_bytes() == data and store.verify(rel, sha)
    assert [r for r, _ in recorded] == [rel, rel], "a reused file is recorded too"
    assert sha_of_path("ab/not-a-hash.bin") is None


def test_a_task_loading_a_changed_artifact_gets_an_error_naming_it(tmp_path: Path) -> None:
    from runner.execute.integrity import CorruptedArtifact, checked_path

    store = Store(tmp_path)
    rel, _, _ = store.put_bytes(b"weights" * 100, ".pt")
    assert checked_path(store, rel, "checkpoint") == store.path(rel).resolve()
    store.path(rel).write_bytes(b"WEIGHTS" * 100)
    with pytest.raises(CorruptedArtifact, match=rf"checkpoint: artifact {rel} is missing or "
                                                r"corrupted \(sha256 mismatch\)"):
        checked_path(store, rel, "checkpoint")
