"""Content-addressed artifact store: ``<root>/<sha[:2]>/<sha><suffix>``, written atomically.

A file is written to a temporary name in the same folder, flushed and fsynced, then renamed:
a reader never sees a partial file, and a killed run leaves at most a stray temp file (which
``gc`` removes). Identical content is stored once. The database refers to files by their path
relative to the root, so a store can be moved or shared over a network file system.

A store folder carries a marker file (``.vitstudy-store``: format, the databases it serves,
creation time) written by the first run that uses it; ``gc`` deletes nothing in a folder
without one, nor for a database the marker does not name, nor any file outside the store's
own layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from runner.errors import StoreError

DEFAULT_ROOT = "artifacts"
#: The file that makes a folder a store, and the version of its format.
MARKER = ".vitstudy-store"
MARKER_FORMAT = 1
#: What a file the store wrote is named: ``<2 hex>/<64 hex><suffix>``, or a temp ``.tmp-*``.
_STORED = re.compile(r"^([0-9a-f]{2})/(\1[0-9a-f]{62})(\.[A-Za-z0-9.]+)?$")
_TEMP = ".tmp-"

#: Given some store paths, which of them must be kept.
KeptPaths = Callable[[list[str]], set[str]]
#: Opens the window in which ``gc`` decides and deletes: no new file may be recorded meanwhile.
GcGuard = Callable[[], AbstractContextManager[KeptPaths]]


def store_root(root: str | Path | None = None) -> Path:
    """The store folder: explicit, else ``VITSTUDY_ARTIFACTS``, else ``./artifacts``."""
    return Path(root or os.environ.get("VITSTUDY_ARTIFACTS") or DEFAULT_ROOT)


def sha_of_path(relpath: str) -> str | None:
    """The sha256 a store path names (``ab/ab12...ef.npz`` -> ``ab12...ef``), None for others."""
    m = _STORED.match(relpath)
    return m.group(2) if m else None


def file_sha256(path: str | Path) -> str | None:
    """The sha256 of a file's content, read in chunks; None when it cannot be read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def keep_only(paths: Iterable[str]) -> GcGuard:
    """A ``GcGuard`` keeping a fixed set of paths (for a store no run is writing to)."""
    keep = set(paths)

    @contextmanager
    def guard() -> Iterator[KeptPaths]:
        yield lambda batch: keep.intersection(batch)

    return guard


@dataclass(frozen=True)
class GcReport:
    """What a gc removed (files, bytes) and kept (referenced, pending, young temp, foreign)."""

    removed: int
    bytes_freed: int
    kept: int


class Store:
    """Put bytes in, get a stable relative path back."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = store_root(root)

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    # ------------------------------------------------------------------------- marker

    def marker(self) -> dict | None:
        """The store's marker (format, databases, created), None when the folder has none."""
        try:
            found = json.loads((self.root / MARKER).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(found, dict):
            return None
        named = found.get("databases")
        found["databases"] = [d for d in named if isinstance(d, str)] if isinstance(
            named, list) else []
        return found

    def claim_for(self, database: str | None) -> None:
        """Make this folder a store serving ``database`` (a URL, password hidden), before a run
        writes to it: a new or empty folder, or one holding only store files (made before
        markers), gets the marker; a folder with other files is refused (``StoreError``).
        ``database=None`` only checks, writing nothing."""
        found = self.marker()
        if found is None:
            foreign = self._foreign_file()
            if foreign is not None:
                raise StoreError(
                    f"{self.root} is not an artifact store: it holds {foreign}, which vitstudy "
                    "did not write; give --artifacts a new or empty folder")
            found = {"format": MARKER_FORMAT, "databases": [],
                     "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if database is None or database in found["databases"]:
            return
        found["databases"] = [*found["databases"], database]
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_atomic(MARKER, json.dumps(found, indent=1).encode())

    def check_owner(self, database: str) -> None:
        """Raise ``StoreError`` unless the marker names ``database`` and no other: what ``gc``
        needs before it deletes anything here."""
        found = self.marker()
        if not self.root.is_dir():
            raise StoreError(f"{self.root}: no such artifact store folder")
        if found is None:
            raise StoreError(
                f"{self.root} is not an artifact store ({MARKER} is missing or unreadable): gc "
                "deletes only in a folder that `vitstudy run` made for its database (the next "
                "run adopts a store that an older vitstudy made)")
        if found.get("format") != MARKER_FORMAT:
            raise StoreError(f"{self.root}/{MARKER} has format {found.get('format')!r}, not "
                             f"{MARKER_FORMAT}: a newer vitstudy made this store; gc with it")
        databases = found["databases"]
        if database not in databases:
            raise StoreError(f"the artifact store {self.root} belongs to {', '.join(databases)}, "
                             f"not {database}: gc with that store's --db")
        if len(databases) > 1:
            raise StoreError(f"the artifact store {self.root} is shared by {len(databases)} "
                             f"databases ({', '.join(databases)}): gc would remove the files "
                             "of the others")

    def _foreign_file(self) -> str | None:
        """The first file under the root that the store did not write, if any."""
        if not self.root.exists():
            return None
        if not self.root.is_dir():
            return str(self.root)
        for path in self.root.rglob("*"):
            rel = path.relative_to(self.root).as_posix()
            if path.is_file() and not (_STORED.match(rel) or path.name.startswith(_TEMP)):
                return rel
        return None

    # ------------------------------------------------------------------- read, write

    def put_bytes(self, data: bytes, suffix: str, *,
                  on_path: Callable[[str], None] | None = None) -> tuple[str, str, int]:
        """Store ``data`` durably; returns (relative path, sha256, size). ``on_path(rel)`` is
        called before the file is looked for or renamed in (a run records it as pending)."""
        sha = hashlib.sha256(data).hexdigest()
        rel = f"{sha[:2]}/{sha}{suffix}"
        if on_path is not None:
            on_path(rel)
        if self.intact(rel, len(data)) and self.verify(rel, sha):
            return rel, sha, len(data)
        self._write_atomic(rel, data)
        return rel, sha, len(data)

    def _write_atomic(self, rel: str, data: bytes) -> None:
        """Write ``data`` to a temp file beside ``rel``, fsync it, rename it to ``rel``."""
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=_TEMP, suffix=dest.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(dest.parent)

    def intact(self, relpath: str, size: int) -> bool:
        """Whether an artifact file exists with the size recorded for it: one ``stat``."""
        return self.intact_check()(relpath, size)

    def intact_check(self) -> Callable[[str, int], bool]:
        """``intact``, for a cache check's one call per artifact of every cached task: no
        ``Path`` built, and the root's text made once; on POSIX each path is joined to it as
        ``os.path.join`` would (an absolute path stays itself), without calling it."""
        prefix = os.path.join(self.root, "")  # the root with its separator
        posix, join, stat = os.path is posixpath, os.path.join, os.stat

        def intact(relpath: str, size: int) -> bool:
            try:
                if posix:
                    return stat(relpath if relpath[:1] == "/" else prefix + relpath
                                ).st_size == size
                return stat(join(prefix, relpath)).st_size == size  # pragma: no cover
            except OSError:
                return False

        return intact

    def verify(self, relpath: str, sha256: str) -> bool:
        """Whether an artifact's content still hashes to ``sha256`` (reads the whole file)."""
        return file_sha256(self.root / relpath) == sha256

    # ----------------------------------------------------------------------------- gc

    def gc(self, guard: GcGuard, *, dry_run: bool = False, temp_grace_s: float = 3600.0,
           batch: int = 500) -> GcReport:
        """Remove store files that ``guard`` does not keep, and temp files older than
        ``temp_grace_s``. Refuses a folder without a marker; leaves foreign files alone.
        Each batch is decided and deleted inside ``guard()``, so no run can record a file
        between the decision and the deletion."""
        if self.marker() is None:
            raise StoreError(f"{self.root} is not an artifact store ({MARKER} is missing or "
                             "unreadable)")
        removed = freed = kept = 0
        now = time.time()
        stored: list[str] = []
        for path in self.root.rglob("*"):
            rel = path.relative_to(self.root).as_posix()
            if not path.is_file() or rel == MARKER:
                continue
            if _STORED.match(rel):
                stored.append(rel)
            elif path.name.startswith(_TEMP) and now - _mtime(path, now) >= temp_grace_s:
                removed, freed = removed + 1, freed + self._remove(rel, dry_run)
            else:
                kept += 1  # a young temp file, or a file vitstudy did not write
        for i in range(0, len(stored), batch):
            chunk = stored[i:i + batch]
            with guard() as kept_paths:
                keep = kept_paths(chunk)
                for rel in chunk:
                    if rel in keep:
                        kept += 1
                    else:
                        removed, freed = removed + 1, freed + self._remove(rel, dry_run)
        return GcReport(removed, freed, kept)

    def _remove(self, rel: str, dry_run: bool) -> int:
        """Delete one file (unless ``dry_run``); its size, 0 if it is already gone."""
        path = self.root / rel
        try:
            size = path.stat().st_size
            if not dry_run:
                path.unlink()
        except FileNotFoundError:
            return 0
        return size


def _mtime(path: Path, default: float) -> float:
    """A file's modification time, ``default`` when it vanished meanwhile."""
    try:
        return path.stat().st_mtime
    except OSError:
        return default


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class MemorySink:
    """An artifact sink that keeps bytes in memory: for running a kind without a store
    (benchmarks, notebooks, tests). Paths are sequence numbers; nothing is hashed."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def put_bytes(self, data: bytes, suffix: str) -> tuple[str, str, int]:
        path = f"{len(self.files)}{suffix}"
        self.files[path] = data
        return path, "", len(data)
