"""The content-addressed artifact store."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from runner.store import Store, keep_only


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rel, sha, size = store.put_bytes(b"hello", ".bin")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert rel == f"{sha[:2]}/{sha}.bin" and size == 5
    assert store.path(rel).read_bytes() == b"hello"
    assert store.put_bytes(b"hello", ".bin") == (rel, sha, size)
    assert not list(tmp_path.rglob(".tmp-*")), "no temp file is left behind"


def test_intact_and_verify_detect_damage(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rel, sha, size = store.put_bytes(b"0123456789", ".npy")
    assert store.intact(rel, size) and store.verify(rel, sha)
    store.path(rel).write_bytes(b"01234")
    assert not store.intact(rel, size)
    store.path(rel).write_bytes(b"x123456789")
    assert store.intact(rel, size) and not store.verify(rel, sha)
    store.path(rel).unlink()
    assert not store.intact(rel, size)


def test_intact_check_joins_paths_as_os_path_join_does(tmp_path: Path) -> None:
    rel, _, size = Store(tmp_path).put_bytes(b"0123456789", ".bin")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.bin"
    outside.write_bytes(b"abc")
    for root in (tmp_path, str(tmp_path), f"{tmp_path}/"):
        intact = Store(root).intact_check()
        assert intact(rel, size) and not intact(rel, size + 1)
        assert not intact("ab/missing.bin", size)
        assert intact(str(outside), 3)  # an absolute path is itself, as in os.path.join
    outside.unlink()


def test_gc_removes_unreferenced_and_stale_temp_files_only(tmp_path: Path) -> None:
    store = Store(tmp_path)
    keep, _, _ = store.put_bytes(b"keep", ".bin")
    drop, _, _ = store.put_bytes(b"drop", ".bin")
    fresh_tmp = tmp_path / "ab" / ".tmp-fresh.bin"
    stale_tmp = tmp_path / "ab" / ".tmp-stale.bin"
    fresh_tmp.parent.mkdir(exist_ok=True)
    fresh_tmp.write_bytes(b"1")
    stale_tmp.write_bytes(b"22")
    old = time.time() - 7200
    os.utime(stale_tmp, (old, old))
    store.claim_for("sqlite:////somewhere/results.db")
    dry = store.gc(keep_only([keep]), dry_run=True)
    assert (dry.removed, dry.kept) == (2, 2) and store.path(drop).exists()
    report = store.gc(keep_only([keep]))
    assert (report.removed, report.bytes_freed) == (2, 6)
    assert store.path(keep).exists() and not store.path(drop).exists()
    assert fresh_tmp.exists() and not stale_tmp.exists()
